"""The container images, checked by parsing their Dockerfiles (there is no Docker engine here)."""

from __future__ import annotations

import re
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile*"))
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "cmake", "python3-dev", "git", "curl", "wget")
USERADD = re.compile(r"useradd --create-home [^&;]*?([a-z][a-z0-9_-]*)\s*(?:&&|;|$)")
SECRET_NAMES = re.compile(r"(SECRET|TOKEN|PASSWORD|ACCESS_KEY|CREDENTIAL)", re.IGNORECASE)


def stages(path: Path) -> list[list[dict]]:
    """The Dockerfile's instructions, one list per build stage."""
    found: list[list[dict]] = []
    for instruction in DockerfileParser(fileobj=path.open("rb")).structure:
        if instruction["instruction"] == "FROM":
            found.append([])
        if found and instruction["instruction"] != "COMMENT":
            found[-1].append(instruction)
    return found


def values(stage: list[dict], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def test_there_is_a_cpu_and_a_cuda_image():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile", "Dockerfile.cuda"]
    cuda = stages(ROOT / "docker" / "Dockerfile.cuda")
    assert all(values(stage, "FROM")[0].startswith("nvidia/cuda:") for stage in cuda)
    assert "runtime" in values(cuda[-1], "FROM")[0], "the final CUDA stage is a runtime image, not devel"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_multi_stage_pinned_and_fetch_nothing_by_url(path):
    all_stages = stages(path)
    assert len(all_stages) >= 2, "multi-stage: what builds stays out of the final image"
    for stage in all_stages:
        image = values(stage, "FROM")[0].split()[0]
        name, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
        assert name and tag and tag != "latest", f"{path.name}: {image} must name a tag or digest, not latest"
        for add in values(stage, "ADD"):
            assert "://" not in add, f"{path.name}: ADD from a URL ({add}); download in a RUN with a checksum"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_final_stage_runs_as_a_user_with_no_build_tools_or_secrets(path):
    final = stages(path)[-1]
    users = values(final, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), (
        f"{path.name}: the image must not run as root"
    )
    for run in values(final, "RUN"):
        installs = " ".join(re.findall(r"apt-get install ([^&;]*)", run))
        assert not [tool for tool in BUILD_TOOLS if re.search(rf"(^|\s){re.escape(tool)}(\s|$)", installs)], (
            run
        )
    parser = DockerfileParser(fileobj=path.open("rb"))
    baked = [key for key in {**parser.envs, **parser.args} if SECRET_NAMES.search(key)]
    assert not baked, f"{path.name}: credentials come from a Secret at run time, never the image ({baked})"
    for copy in values(final, "COPY") + values(stages(path)[0], "COPY"):
        assert not re.search(r"\.env\b|credentials|\.aws|\.netrc", copy), copy
    user = next(match.group(1) for run in values(final, "RUN") if (match := USERADD.search(run)))
    assert parser.envs["HF_HOME"].startswith(f"/home/{user}/"), "HF_HOME must be on a path the user can write"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_install_warmstart_as_the_readme_does_and_carry_its_version(path):
    """The same torch pin as the README's commands, the package from this checkout with the extra
    the cluster needs (and the model server, for the InferenceService's predictor), and labels naming the version and the source."""
    readme = (ROOT / "README.md").read_text()
    torch_pin = re.search(r"pip install (torch==[\d.]+) \.", readme).group(1)
    build = " ".join(values(stages(path)[0], "RUN"))
    assert f"pip install --no-cache-dir {torch_pin} " in build
    assert re.search(r'pip install --no-cache-dir "\.\[kubeflow,serve,audio\]"', build)
    labels = DockerfileParser(fileobj=path.open("rb")).labels
    assert labels["org.opencontainers.image.version"] == installed_version("warmstart")
    assert labels["org.opencontainers.image.source"].startswith("https://")


def test_the_build_context_leaves_out_local_state():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "warmstart-work", ".gpu", "tests", "**/__pycache__"):
        assert entry in ignored
