"""Exceptions raised by cbp."""


class DivergenceError(ArithmeticError):
    """Training produced a NaN or infinite loss or parameter.

    The network's parameters are left at their last finite values.
    """


class NativeUnavailableError(ImportError):
    """``backend="native"`` was asked for but the compiled core did not load."""


class FormatError(ValueError):
    """A file given to :func:`cbp.load` is not a readable cbp network."""
