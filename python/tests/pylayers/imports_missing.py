"""A layer module whose own import fails: the error is the module's, with its traceback."""
import no_such_dependency_module  # noqa: F401
