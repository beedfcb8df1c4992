"""rltx.native_memory: after a training run, a freed buffer is reused instead of being mapped and faulted anew.

Two oracles. glibc marks a block it mapped on its own (IS_MMAPPED, bit 1 of the size word before the block), and
unmaps such a block on free. The kernel counts minor page faults (getrusage): a 4 MiB buffer mapped afresh faults in
its 1024 pages again every time it is written, one kept in the heap faults them once. The script first sets
TensorFlow's threshold by hand, which shows that both see the difference, then trains. (With transparent huge pages
on "always" a fresh mapping faults far less, so the positive control reads the bit, not the count.)
"""
import os
import platform
import subprocess
import sys

import pytest

from rltx import native_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

REUSE_SCRIPT = """
import ctypes, resource, sys, tempfile
from pathlib import Path
from rltx import native_memory
from rltx.config import make_recipe
from rltx.pretrain import pretrain
sys.path.insert(0, sys.argv[1])
from tests_support import tiny_recipe_dict

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
SIZE, ROUNDS = 4 << 20, 20

IS_MMAPPED = 0x2  # glibc's chunk header

def rounds():  # (rounds whose block glibc mapped on its own, minor page faults of all rounds)
    before, mapped = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, 0
    for _ in range(ROUNDS):
        buffer = libc.malloc(SIZE)
        mapped += bool(ctypes.c_size_t.from_address(buffer - ctypes.sizeof(ctypes.c_size_t)).value & IS_MMAPPED)
        ctypes.memset(buffer, 1, SIZE)
        libc.free(buffer)
    return mapped, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

libc.mallopt(native_memory.M_MMAP_THRESHOLD, 128 * 1024)  # what TensorFlow sets when it builds an input iterator
with_tensorflows_threshold = rounds()
with tempfile.TemporaryDirectory() as directory:
    pretrain(make_recipe(tiny_recipe_dict()), Path(directory) / "run")
after_training = rounds()
print(*with_tensorflows_threshold, *after_training)
"""


@pytest.mark.slow  # a subprocess: the thresholds are the process's, and TensorFlow sets its own once per process
@pytest.mark.skipif(not GLIBC, reason="mallopt's thresholds are glibc's")
def test_after_a_training_run_a_freed_buffer_is_reused_without_faulting_its_pages_again():
    tests_dir = os.path.dirname(__file__)
    result = subprocess.run([sys.executable, "-c", REUSE_SCRIPT, tests_dir], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert result.returncode == 0, result.stderr[-3000:]
    mapped_before, _, mapped_after, faults_after = map(int, result.stdout.split())
    assert mapped_before == 20                  # TensorFlow's threshold: a fresh mapping every round
    assert mapped_after == 0                    # after training: the heap's block, every round
    assert faults_after < 3 * (4 << 20) // 4096  # its 1024 pages faulted in once, then reused


@pytest.mark.skipif(not GLIBC, reason="mallopt's thresholds are glibc's")
def test_glibc_accepts_both_thresholds():
    assert native_memory.reuse_freed_buffers() is True
