"""Misspelt keywords: a `TypeError` naming the keyword and the closest
valid one, for every public function and class of keras-prune.

Python names an unknown keyword but suggests nothing, and when the
misspelt keyword is a required argument (`prune_once(model, sparsty=0.5)`)
it only says that `sparsity` is missing. `keywords_checked` wraps a
function (or a class's `__init__`) so that both say which keyword was not
understood and which one was meant.
"""

import difflib
import functools
import inspect


def unknown_keyword_error(function, name, valid):
    """The `TypeError` for keyword `name`, unknown to `function`.

    Args:
        function: Name of the function or class, for the message.
        name: The keyword given.
        valid: The keyword names accepted.

    Returns:
        A `TypeError` naming `name` and the closest of `valid` (or listing
        them when none is close).
    """
    valid = sorted(set(valid))
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if close:
        hint = f" Did you mean {close[0]!r}?"
    elif valid:
        hint = f" Valid keywords: {', '.join(valid)}."
    else:
        hint = " It takes no keyword arguments."
    return TypeError(
        f"{function}() got an unexpected keyword argument {name!r}.{hint}"
    )


def keywords_checked(fn):
    """Decorator: unknown keywords raise `unknown_keyword_error`.

    A keyword that is not a parameter of `fn` raises before `fn` runs:
    always when `fn` takes no `**kwargs`; when it does, if the call cannot
    bind (a misspelt required argument: the real one is then missing).
    Other unknown keywords in `**kwargs` are left to `fn`. The signature
    seen by `inspect` and `help` is `fn`'s.

    Args:
        fn: A function, or a class's `__init__`.

    Returns:
        The wrapped function.

    Example:

    ```python
    @keywords_checked
    def prune_once(model, sparsity, allocation="layer", **kwargs): ...

    prune_once(model, sparsty=0.5)
    # TypeError: prune_once() got an unexpected keyword argument
    # 'sparsty'. Did you mean 'sparsity'?
    ```
    """
    signature = inspect.signature(fn)
    params = signature.parameters
    kinds = inspect.Parameter
    valid = [
        name
        for name, p in params.items()
        if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
        and not (name == "self" and fn.__name__ == "__init__")
    ]
    var_keyword = any(p.kind == kinds.VAR_KEYWORD for p in params.values())
    title = fn.__qualname__
    if title.endswith(".__init__"):
        title = title[: -len(".__init__")]

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        for name in kwargs:
            if name in params and params[name].kind != kinds.VAR_KEYWORD:
                continue
            if var_keyword:
                try:
                    signature.bind(*args, **kwargs)
                except TypeError:
                    raise unknown_keyword_error(title, name, valid) from None
                break
            raise unknown_keyword_error(title, name, valid)
        return fn(*args, **kwargs)

    return checked
