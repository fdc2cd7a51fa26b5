"""Tiny, randomly initialised Hugging Face BERT folders with a WordPiece tokenizer, for the text_real tests."""

from __future__ import annotations

from pathlib import Path

WORDS = ["the", "a", "film", "movie", "plot", "was", "is", "good", "bad", "great", "awful", "not", "very", "fun",
         "dull", "and", "but", "acting", "story", "!", ".", ","]


def save_tiny_bert(folder: Path, hidden: int = 16, layers: int = 2, heads: int = 2, classifier: bool = False,
                   tokenizer: bool = True, seed: int = 0) -> Path:
    """A BERT encoder (or sequence classifier) of the given size with a word-level WordPiece vocabulary."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=heads, intermediate_size=2 * hidden,
                                     max_position_embeddings=64, num_labels=2)
    torch.manual_seed(seed)
    model = (transformers.BertForSequenceClassification if classifier else transformers.BertModel)(config)
    model.save_pretrained(folder)
    if tokenizer:
        ids = {word: i for i, word in enumerate(vocab)}
        transformers.BertTokenizerFast(vocab=ids, do_lower_case=True).save_pretrained(folder)
    return folder
