"""Errors a user can act on: raised for bad input and shown as one line, without a traceback."""


class WarmstartError(Exception):
    """A mistake in the user's data, model, URI or config: the message says what, where and what to do."""


class ConfigError(WarmstartError):
    """The config file or a --set override is invalid."""


class DataError(WarmstartError):
    """The dataset cannot be read or is unusable for training."""


class ModelError(WarmstartError):
    """The model URI cannot be resolved or its files are unsafe or unusable."""


class RegistrationRefused(WarmstartError):
    """register was asked to publish a model without a passing gate result for that very model."""
