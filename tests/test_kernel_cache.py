"""The compiled CPU scan's cache is trusted only when it is private and each library matches its build."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

from seqbench_plugins import cpu_scan
from seqbench_plugins.mamba import MambaBlock

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")

# A library whose constructor runs the moment it is loaded: the marker proves it was dlopen'ed.
PLANTED_SOURCE = """
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *marker = fopen(MARKER, "w");
    if (marker) { fputs("loaded", marker); fclose(marker); }
}
"""


@pytest.fixture
def kernel_cache(tmp_path, monkeypatch):
    """A fresh kernel cache folder, and no build remembered from before (nor after)."""
    folder = tmp_path / "kernels"
    monkeypatch.setenv(cpu_scan.CACHE_ENV, str(folder))
    cpu_scan._build.cache_clear()
    yield folder
    cpu_scan._build.cache_clear()


def runs_the_pytorch_scan() -> bool:
    block = MambaBlock(8, d_state=4)
    with torch.inference_mode():
        block(torch.randn(1, 5, 8))
    return block.kernel_path == "mamba:torch-chunked"


@needs_compiler
def test_a_folder_others_can_write_is_refused(kernel_cache):
    kernel_cache.mkdir()
    kernel_cache.chmod(0o777)
    with pytest.warns(UserWarning, match=f"{kernel_cache} is writable by group or others"):
        assert not cpu_scan.available()
    assert "chmod go-w" in cpu_scan.unavailable_reason()
    assert runs_the_pytorch_scan()
    assert not list(kernel_cache.iterdir())  # nothing was built there


@needs_compiler
def test_a_folder_of_another_user_is_refused(kernel_cache, monkeypatch):
    kernel_cache.mkdir(mode=0o700)
    monkeypatch.setattr(os, "getuid", lambda: kernel_cache.stat().st_uid + 1)
    with pytest.warns(UserWarning, match=f"{kernel_cache} is owned by another user"):
        assert not cpu_scan.available()
    assert runs_the_pytorch_scan()


@needs_compiler
def test_a_new_folder_is_private_and_each_library_has_its_sha256(kernel_cache):
    assert cpu_scan.available(), cpu_scan.unavailable_reason()
    assert kernel_cache.stat().st_mode & 0o077 == 0
    (library,) = kernel_cache.glob("cpu_scan-*.so")
    assert cpu_scan._digest_path(library).read_text().strip() == cpu_scan._sha256(library)


@needs_compiler
@pytest.mark.parametrize("record", ["kept", "removed"])
def test_a_planted_library_is_never_loaded(kernel_cache, tmp_path, record):
    assert cpu_scan.available(), cpu_scan.unavailable_reason()
    (library,) = kernel_cache.glob("cpu_scan-*.so")
    marker = tmp_path / "planted-library-ran"
    source = tmp_path / "planted.c"
    source.write_text(PLANTED_SOURCE)
    subprocess.run(["cc", "-shared", "-fPIC", f'-DMARKER="{marker}"', str(source), "-o", str(library)],
                   check=True, capture_output=True)
    planted = library.read_bytes()
    if record == "removed":
        cpu_scan._digest_path(library).unlink()

    cpu_scan._build.cache_clear()
    with pytest.warns(UserWarning, match=f"{library} is not loaded"):
        assert cpu_scan.available(), cpu_scan.unavailable_reason()
    assert not marker.exists()
    assert library.read_bytes() != planted  # rebuilt from the source, and recorded again
    assert cpu_scan._digest_path(library).read_text().strip() == cpu_scan._sha256(library)
