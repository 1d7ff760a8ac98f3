"""Test-session settings shared by every test folder.

Tests use tiny tensors, which gain nothing from several intra-op threads; on a CPU shared with
other jobs, every multi-threaded op then waits on an OpenMP barrier (milliseconds each). One
thread made tests/models run in 15 s instead of 180 s on the busy 2-core development machine.
"""
import torch

torch.set_num_threads(1)
