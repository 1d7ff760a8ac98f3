"""`pip install .` must not put the repository's generic top-level folders into site-packages."""
import shutil
import subprocess
import sys

from tests.engine.synthetic import REPO_ROOT

TOP_LEVEL = ("datasets", "utils", "models", "engine", "softmax_splatting")


def test_pip_install_refuses_with_a_message_and_installs_nothing(tmp_path):
    source = tmp_path / "src"  # a copy: pip must not write into the checkout
    source.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", source)
    shutil.copy(REPO_ROOT / "README.md", source)
    shutil.copytree(REPO_ROOT / "scripts", source / "scripts")
    for name in TOP_LEVEL:
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps",
                             "--disable-pip-version-check", "--target", str(target), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "STBN is not an installable package" in result.stdout + result.stderr
    installed = {p.name for p in target.iterdir()} if target.exists() else set()
    assert not installed & set(TOP_LEVEL)
