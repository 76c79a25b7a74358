"""Errors a user can act on: raised for bad input and shown as one line, without a traceback."""


class WarmstartError(Exception):
    """A mistake in the user's data, model, URI or config: the message says what, where and what to do."""


def naming(kind: type[WarmstartError], what: str, err: WarmstartError) -> WarmstartError:
    """`err` as a `kind` error whose message starts with the setting it came from, `what`."""
    message = str(err)
    return kind(message if message.startswith(what) else f"{what}: {message}")


class ConfigError(WarmstartError):
    """The config file or a --set override is invalid."""


class DataError(WarmstartError):
    """The dataset cannot be read or is unusable for training."""


class ModelError(WarmstartError):
    """The model URI cannot be resolved or its files are unsafe or unusable."""


class RegistrationRefused(WarmstartError):
    """register was asked to publish a model without a passing gate result for that very model."""
