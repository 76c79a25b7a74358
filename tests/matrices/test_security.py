"""Nothing in warmstart's own code can run what its input says: no unpickling, no eval, no remote
code, no unsafe YAML, no shell. Read from the syntax tree of every module in src/, components/ and
pipelines/, so a new call site fails here, not in a review."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("src", "components", "pipelines") for p in (ROOT / d).rglob("*.py"))


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def problems(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(
                n and n.split(".")[0] in ("pickle", "cPickle", "dill", "marshal", "shelve") for n in names
            ):
                found.append(f"line {node.lineno}: imports a pickle module")
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        where = f"line {node.lineno}: {name}"
        if name in ("eval", "exec", "compile") and not isinstance(node.func, ast.Attribute):
            found.append(f"{where} runs code from a string")
        if name.endswith("torch.load") and not is_true(keyword(node, "weights_only")):
            found.append(f"{where} without weights_only=True")
        if is_true(keyword(node, "trust_remote_code")):
            found.append(f"{where} with trust_remote_code=True")
        if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
            found.append(f"{where}: use yaml.safe_load")
        if is_true(keyword(node, "shell")):
            found.append(f"{where} with shell=True")
        if name.endswith(("from_pretrained",)) and keyword(node, "use_safetensors") is not None:
            value = keyword(node, "use_safetensors")
            if not is_true(value):
                found.append(f"{where} may load pickled weights (use_safetensors is not True)")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_code_runs_from_input(path):
    assert problems(ast.parse(path.read_text(), str(path))) == []


def test_the_check_finds_what_it_looks_for():
    bad = """
import pickle
torch.load(f)
torch.load(f, weights_only=False)
AutoModel.from_pretrained(d, trust_remote_code=True)
AutoModel.from_pretrained(d, use_safetensors=False)
yaml.load(text)
subprocess.run(cmd, shell=True)
eval(text)
"""
    assert len(problems(ast.parse(bad))) == 8
    good = "torch.load(f, weights_only=True)\nyaml.safe_load(t)\nre.compile(p)\nsubprocess.run(['x'])\n"
    assert problems(ast.parse(good)) == []


def test_weights_are_loaded_as_safetensors():
    """Every from_pretrained that loads weights says use_safetensors=True; those of a config, a
    tokenizer, an image processor or a feature extractor load no weights."""
    loads = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and dotted(node.func).split(".")[-1] == "from_pretrained":
                receiver = dotted(node.func)
                if not any(
                    kind in receiver for kind in ("Config", "Tokenizer", "Processor", "FeatureExtractor")
                ):
                    loads.append((path.name, node.lineno, is_true(keyword(node, "use_safetensors"))))
    assert len(loads) >= 3 and all(safe for _, _, safe in loads), loads
