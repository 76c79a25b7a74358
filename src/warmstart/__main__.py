"""`python -m warmstart` is the `warmstart` command."""

import os
import sys

# `python -m` puts the working directory first on sys.path. Run from a checkout of this repository,
# its `docker/` folder (Dockerfiles) would then import as a namespace package named `docker` and
# break kfp.local, which probes for the Docker SDK with `import docker`. The installed console
# script never has the working directory on sys.path; this makes `python -m` behave the same.
sys.path[:] = [entry for entry in sys.path if entry not in ("", os.getcwd())]

from warmstart.app.cli import main  # noqa: E402

main()
