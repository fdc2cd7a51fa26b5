import os

# Two torch threads on a 2-core machine that is also running something else spin-wait badly; tests stay serial.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
