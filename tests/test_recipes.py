"""README's recipes ("Adding a metric", "Adding a claim", "Adding a data source") name real things:
every file, folder, module attribute, parameter and name they put in backticks exists, with the recipe's
placeholder (<family>) read as one real family. A renamed function or a moved file that leaves a
recipe behind fails here."""
import functools
import importlib
import importlib.util
import re
import subprocess

import pytest
import yaml

from micro import REPO
from tgo.params import SCHEMA

RECIPES = ("Adding a metric", "Adding a claim", "Adding a data source")
EXAMPLE = {"<family>": "spectral"}


def section(title):
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def names(title):
    """The backticked words of a recipe, placeholders filled in; commands and code (with spaces or
    calls) left out."""
    found = []
    for word in re.findall(r"`([^`\n]+)`", section(title)):
        for placeholder, example in EXAMPLE.items():
            word = word.replace(placeholder, example)
        if not re.search(r"[\s(<]", word):
            found.append(word)
    return found


@functools.cache
def tracked():
    return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()


@functools.cache
def defined():
    """The names the repository defines: in its Python files (functions, classes, assignments), its
    modules and packages, and dvc.yaml's sections and stages."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    out = {f"{key}:" for key in dvc} | set(dvc["stages"])
    for path in (p for p in tracked() if p.endswith(".py")):
        found = re.findall(r"^(?:(?:def|class)\s+(\w+)|\s*(\w+)\s*=)", (REPO / path).read_text(), re.M)
        out |= {a or b for a, b in found}
        out |= {part.removesuffix(".py") for part in path.split("/")}
    return out


def exists(word):
    group, _, key = word.partition(".")
    if key and group in SCHEMA:  # a parameter
        return key in SCHEMA[group]
    if "/" in word:  # a file or folder
        return (REPO / word).exists()
    if re.fullmatch(r"tgo(\.\w+)+", word):  # a module, or a module's attribute
        module, _, attr = word.rpartition(".")
        try:
            return hasattr(importlib.import_module(module), attr)
        except ModuleNotFoundError:  # the word names a module itself
            return importlib.util.find_spec(word) is not None
    if re.fullmatch(r"[\w-]+\.[a-z]+", word):  # a file name: somewhere in git
        return any(f.rsplit("/", 1)[-1] == word for f in tracked())
    return word in defined()


@pytest.mark.parametrize("title", RECIPES)
def test_a_recipe_names_only_what_exists(title):
    missing = [w for w in names(title) if not exists(w)]
    assert not missing, f"README's '{title}' names what the repository does not have: {missing}"
