"""The README is the front door: short, and every document it points to (and they point to) exists."""
import re

from tests.engine.synthetic import REPO_ROOT

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
DOCUMENTS = [REPO_ROOT / "README.md", REPO_ROOT / "weights" / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def test_readme_is_at_most_200_lines():
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= 200


def test_relative_links_resolve():
    broken = []
    for doc in DOCUMENTS:
        for target in LINK.findall(doc.read_text()):
            if not target.startswith(("http://", "https://")) and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO_ROOT)} -> {target}")
    assert not broken, broken


def test_every_topic_document_is_reachable_from_the_readme():
    readme = (REPO_ROOT / "README.md").read_text()
    linked = {(REPO_ROOT / target).resolve() for target in LINK.findall(readme)}
    missing = [doc.name for doc in DOCUMENTS[1:] if doc.resolve() not in linked]
    assert not missing, f"not linked from README.md: {missing}"


def test_backticked_repository_paths_exist():
    """A path named in the docs (`engine/inference/scoring.py`) is a real file or folder."""
    path = re.compile(r"`((?:engine|models|utils|datasets|benchmarks|tests|scripts|softmax_splatting|weights|docs)"
                      r"/[\w./-]*\w)`")
    missing = sorted({f"{doc.name}: {p}" for doc in DOCUMENTS for p in path.findall(doc.read_text())
                      if "*" not in p and not (REPO_ROOT / p).exists()})
    assert not missing, missing
