"""Every example on every page (README.md and docs/) is checked, cheaply: Python blocks run (a page's blocks top to
bottom in one namespace), YAML blocks load and, where they are a config or a piece of one, validate as kdkit reads a
config, and every shell command parses: a `kdkit ...` line against the command line's own parser (commands, options,
their types), the other tools against what they name (an extra of pyproject.toml, a Makefile target, a benchmark
script). The commands that train run in tests/docs/test_doc_commands.py, from the time table of Getting started. Every
page that kdkit's messages and --help name exists, with the heading they name."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer
import typer.main
import yaml
from doc_pages import DOCS, GETTING_STARTED, ROOT, Block, all_blocks, code_blocks, page_id, pages

from kdkit.cli import app

# --------------------------------------------------------------------------------------------- Python examples
LM_PAGE = DOCS / "guides" / "language-models.md"

# Blocks that continue from objects a reader brings (their own models, data, tokenizers): the names the block takes
# as given, made here small. Keyed by a distinctive part of the block; the block runs in a copy of its page's
# namespace with these added.
GIVEN = {
    "fused_head_divergence(ForwardKL(), student_hidden": """
import torch, transformers
def _gpt2(width, seed):
    transformers.set_seed(seed)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=11, n_positions=16, n_embd=width,
                                                                n_layer=1, n_head=2))
student, teacher = _gpt2(16, 0), _gpt2(32, 1)
student_hidden, teacher_hidden = torch.randn(2, 7, 16), torch.randn(2, 7, 32)
labels = torch.randint(0, 11, (2, 7))
""",
    "DistillationTrainer(model=student": """
import torch, transformers
def _gpt2(width, seed):
    transformers.set_seed(seed)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=11, n_positions=16, n_embd=width,
                                                                n_layer=1, n_head=2))
student, teacher, tokenizer = _gpt2(16, 0), _gpt2(32, 1), None
_ids = torch.randint(0, 11, (12, 7), generator=torch.Generator().manual_seed(0))
train_set = [{"input_ids": row, "attention_mask": torch.ones_like(row), "labels": row} for row in _ids]
import transformers as _t
_Args = _t.TrainingArguments  # 3 steps, not the example's 100, on 12 rows: the test checks that it runs
TrainingArguments = lambda out, **kw: _Args(out, per_device_train_batch_size=4, report_to=[], save_strategy="no",
                                            use_cpu=True, disable_tqdm=True, **{**kw, "max_steps": 3})
""",
    "encode_cross(texts, student_encode": """
from kdkit.models.lm import LMTransformer
texts = ["the cat sat on the mat", "a dog ran", "the mat sat"] * 4
def student_encode(text):  # one token per character
    return [3 + ord(c) % 7 for c in text], list(range(len(text)))
def teacher_encode(text):  # one token per word
    ids, starts, pos = [], [], 0
    for word in text.split(" "):
        ids.append(3 + len(word) % 5)
        starts.append(pos)
        pos += len(word) + 1
    return ids, starts
student, teacher = LMTransformer(10, 128, 1, 8, 2), LMTransformer(8, 128, 1, 16, 2)
""",
}


def _lm_folders(workdir: Path) -> None:
    """What the language-model guide's own-model example reads: two folders written by `save_pretrained` (tiny
    GPT-2 models sharing a word-level tokenizer) and JSONL prompt/response files."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "<eos>", "<unk>", *(f"w{i}" for i in range(61))]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>",
                                                     pad_token="<pad>")
    for name, width in (("teacher", 32), ("student", 16)):
        transformers.set_seed(0)
        config = transformers.GPT2Config(vocab_size=len(words), n_positions=256, n_embd=width, n_layer=1, n_head=2)
        transformers.GPT2LMHeadModel(config).save_pretrained(workdir / "models" / name)
        tokenizer.save_pretrained(workdir / "models" / name)
    (workdir / "data").mkdir()
    for split, n in (("train", 40), ("test", 8)):
        rows = [{"prompt": f"w{i % 61} w{(i + 1) % 61}", "response": f"w{(i + 2) % 61} w{(i * 7) % 61}"}
                for i in range(n)]
        (workdir / "data" / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))


SETUP = {LM_PAGE: _lm_folders}


def _run_blocks(blocks: list[Block], namespace: dict) -> dict:
    for block in blocks:
        given = next((code for key, code in GIVEN.items() if key in block.code), None)
        scope = namespace
        if given is not None:
            scope = dict(namespace)
            exec(compile(given, f"{block.where} (given)", "exec"), scope)
        exec(compile(block.code, block.where, "exec"), scope)
    return namespace


def _python_blocks(page: Path) -> list[Block]:
    return [block for block in code_blocks(page) if block.lang == "python"]


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Getting started's examples, run once: the names they define (teacher, student, train, val, settings, terms)
    are the ones the other pages' examples continue from."""
    workdir = tmp_path_factory.mktemp("getting-started")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        namespace = _run_blocks(_python_blocks(GETTING_STARTED), {"__name__": "__docs__"})
    return workdir, namespace


PYTHON_PAGES = [page for page in pages() if page != GETTING_STARTED and _python_blocks(page)]


def test_getting_started_has_python_examples(started) -> None:
    assert "student" in started[1] and "settings" in started[1]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=page_id)
def test_python_examples_run(page, started, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    if page in SETUP:
        SETUP[page](tmp_path)
    standalone = page == ROOT / "README.md"  # the front door's example needs nothing before it
    _run_blocks(_python_blocks(page), {"__name__": "__docs__"} if standalone else dict(started[1]))


# ----------------------------------------------------------------------------------------------- YAML examples
SECTIONS = {"output_dir", "seed", "data", "teacher", "student", "distill", "train", "tune", "kind", "n_jobs"}
LM_DATA = {"synthetic_addition", "lm_files"}


def _merge(base: dict, piece: dict) -> dict:
    """`piece` over `base`: mappings merge key by key, except that one naming another `name` replaces it (another
    data source, model or scheme brings its own keys)."""
    out = dict(base)
    for key, value in piece.items():
        old = out.get(key)
        mappings = isinstance(old, dict) and isinstance(value, dict)
        out[key] = _merge(old, value) if mappings and value.get("name", old.get("name")) == old.get("name") else value
    return out


def _validate(raw: dict) -> None:
    from kdkit.families.classification.config import parse_config
    from kdkit.families.classification.tune import check_space
    from kdkit.families.lm.config import parse_lm_config
    from kdkit.families.tabular.config import is_tabular_config, parse_tabular_config

    if is_tabular_config(raw):
        parse_tabular_config(raw)
        return
    if raw["data"].get("name") in LM_DATA:
        parse_lm_config(raw)
        return
    cfg = parse_config(raw)
    if "tune" in raw:
        check_space(cfg)  # both ends of every range give a valid config


def _yaml_cases() -> list[tuple[Path, list[Block]]]:
    return [(page, blocks) for page in pages() if (blocks := [b for b in code_blocks(page) if b.lang == "yaml"])]


@pytest.mark.parametrize(("page", "blocks"), _yaml_cases(), ids=lambda c: page_id(c) if isinstance(c, Path) else "")
def test_yaml_examples_are_configs_kdkit_accepts(page, blocks, tmp_path, monkeypatch) -> None:
    """A page's YAML blocks in order: a block with data, teacher and student is a whole config (and the base of
    the blocks after it on its page); any other block is a piece of the config before it (else of
    configs/demo.yaml)."""
    monkeypatch.chdir(tmp_path)  # the folders configs name are checked as they are read: make them
    for folder in ("models/all-MiniLM-L6-v2", "data/chest_xray/train/a", "data/chest_xray/train/b", "weights"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "weights" / "resnet18-f37072fd.pth").write_bytes(b"")
    rows = "".join(f"{word} film,{i % 2},{'fresh' if i % 2 else 'rotten'}\n" for i, word in enumerate(["a", "b"] * 4))
    for name in ("train.csv", "test.csv"):
        (tmp_path / "data" / name).write_text("review,stars,verdict\n" + rows)
    base = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    for block in blocks:
        raw = yaml.safe_load(block.code)
        assert isinstance(raw, dict) and set(raw) <= SECTIONS, f"{block.where}: not a kdkit config or piece of one"
        whole = {"data", "teacher", "student"} <= set(raw)
        try:
            _validate(raw if whole else _merge(base, raw))
        except Exception as err:  # the block's own place, not this test's, is what a reader needs
            raise AssertionError(f"{block.where}: {err}") from err
        if whole:
            base = raw


# ---------------------------------------------------------------------------------------------- shell commands
COMMAND = typer.main.get_command(app)
PLACEHOLDERS = {"N": "2"}  # integer options written as a placeholder in a synopsis
ELSEWHERE = {"createdb"}  # tools of other projects, named only to say where a step happens


def _synopsis(words: list[str]) -> list[str]:
    """A synopsis line as one concrete command: `[--task a|b]` -> `--task a`, `RUN_DIR...` -> `RUN_DIR`."""
    line = re.sub(r"\[([^\]]*)\]", r"\1", " ".join(words))
    line = re.sub(r"(\S+)\|\S+", r"\1", line)
    return [PLACEHOLDERS.get(w, w.removesuffix("...")) for w in line.split()]


def parse_kdkit(argv: list[str]) -> None:
    """Parse a kdkit command line as `kdkit` does, down to its last sub-command, without running it."""
    group = COMMAND  # typer's own copy of click: its errors are typer.TyperException
    ctx = group.make_context("kdkit", list(argv))
    while hasattr(group, "resolve_command"):  # a group: its sub-command parses the rest
        # the words after a group's own options (click 8.2 keeps the sub-command's name apart, privately)
        words = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not words:
            return
        name, cmd, rest = group.resolve_command(ctx, words)
        assert cmd is not None, f"no command {name}"
        group, ctx = cmd, cmd.make_context(name, rest, parent=ctx)


def _pyproject_extras() -> set[str]:
    """The names of [project.optional-dependencies] (tomllib is Python 3.11+; kdkit runs on 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+) = \[", section, re.M))


def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


def check_command(line: str) -> None:
    words = shlex.split(line, comments=True)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value before the command
        words = words[1:]
    if not words:
        return
    tool, args = words[0], words[1:]
    if tool == "kdkit":
        parse_kdkit(_synopsis(args))
    elif tool == "torchrun":
        parse_kdkit(_synopsis(args[args.index("$(which") + 2:]))  # torchrun OPTIONS $(which kdkit) ARGS
    elif tool == "pip":
        extras = {e for arg in args for e in re.findall(r"kdkit\[([\w,]+)\]", arg) for e in e.split(",")}
        assert args[0] == "install" and extras <= _pyproject_extras(), f"unknown extra in {line}"
    elif tool == "make":
        assert set(args) <= _make_targets(), f"no such make target: {line}"
    elif tool == "python" and args[0] == "-c":
        compile(args[1], line, "exec")
    elif tool == "python":
        assert (ROOT / args[0]).is_file(), f"no such script: {line}"
    else:
        assert tool in ELSEWHERE, f"a command this test does not know how to check: {line}"


def _commands() -> list[tuple[str, str]]:
    """(where, command) for every line of a bash block and every `$ ` line of a plain block."""
    found = []
    for page in pages():
        for block in code_blocks(page):
            for offset, line in enumerate(block.code.splitlines(), start=1):
                if block.lang == "bash" and line.strip() and not line.startswith("#"):
                    found.append((f"{page_id(page)}:{block.line + offset}", line))
                elif block.lang == "" and line.startswith("$ "):
                    found.append((f"{page_id(page)}:{block.line + offset}", line[2:]))
    return found


def test_the_pages_show_commands() -> None:
    assert len(_commands()) > 40 and all_blocks("bash")


@pytest.mark.parametrize(("where", "line"), _commands(), ids=[w for w, _ in _commands()])
def test_each_shell_command_parses(where, line) -> None:
    try:
        check_command(line)
    except (typer.TyperException, typer.Exit, AssertionError) as err:
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        raise AssertionError(f"{where}: `{line}`: {message}") from None


def test_a_wrong_option_fails_the_check() -> None:
    with pytest.raises(typer.TyperException, match="quikc"):
        check_command("kdkit demo --quikc")
    with pytest.raises(typer.TyperException, match="integer"):
        check_command("kdkit evaluate runs/demo --threads many")
    with pytest.raises(typer.TyperException, match="nonsense"):
        check_command("kdkit nonsense")
    with pytest.raises(AssertionError):
        check_command("pip install 'kdkit[nonsense]'")


# ------------------------------------------------------------------------------ the pages kdkit's messages name
DOC_REFERENCE = re.compile(r"docs/([\w/-]+\.md)(?:#([\w-]+))?")


def _anchors(page: Path) -> set[str]:
    """The ids MkDocs gives a page's headings (the toc extension's default slugs)."""
    from markdown.extensions.toc import slugify

    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slugify(m.group(1), "-") for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _references() -> list[tuple[str, str, str]]:
    found = []
    for source in sorted((ROOT / "src").rglob("*.py")):
        for m in DOC_REFERENCE.finditer(source.read_text(encoding="utf-8")):
            found.append((str(source.relative_to(ROOT)), m.group(1), m.group(2) or ""))
    return found


def test_kdkit_names_its_documentation() -> None:
    assert {page for _, page, _ in _references()} >= {"results.md", "guides/images.md", "tuning.md"}


@pytest.mark.parametrize(("source", "page", "anchor"), _references(), ids=lambda v: v)
def test_each_page_kdkit_names_exists(source, page, anchor) -> None:
    path = DOCS / page
    assert path.is_file(), f"{source} names docs/{page}, which does not exist"
    assert not anchor or anchor in _anchors(path), f"{source} names docs/{page}#{anchor}: no such heading"


def _commands_of(command, path: str = "kdkit") -> list[tuple[str, object]]:
    """Every command and group of the command line, by its path (`kdkit tabular fit`)."""
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands_of(sub, f"{path} {name}")
    return found


@pytest.mark.parametrize(("path", "command"), _commands_of(COMMAND), ids=lambda v: v if isinstance(v, str) else "")
def test_each_help_ends_with_its_page(path, command) -> None:
    found = DOC_REFERENCE.search(command.epilog or "")
    assert found, f"`{path} --help` names no page of the documentation"
    page, anchor = DOCS / found.group(1), found.group(2)
    assert page.is_file() and (not anchor or anchor in _anchors(page)), f"`{path} --help` names a missing page"


def _readme_links() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"\]\((docs/[^)#]+)#?([^)]*)\)", text)


@pytest.mark.parametrize(("target", "anchor"), _readme_links())
def test_each_readme_link_reaches_its_page(target, anchor) -> None:
    assert (ROOT / target).is_file(), target
    assert not anchor or anchor in _anchors(ROOT / target), f"{target}#{anchor}"
