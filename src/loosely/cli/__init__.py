"""The ``loosely`` command line (:mod:`.main` dispatches); the library never imports it.

One module per command group: :mod:`.kcat` (``kcat``/``produce``/``consume``/``metadata``/``query``),
:mod:`.admin` (``topics``, ``groups``), :mod:`.acls_cmd`, :mod:`.users_cmd`, :mod:`.security_cmd`, :mod:`.log_cmd`,
:mod:`.mirror_cmd`, :mod:`.registry_cmd`, :mod:`.hollow_cmd`, :mod:`.views_cmd`, :mod:`.top` and :mod:`.demo`.
"""

__all__ = [
    "acls_cmd",
    "admin",
    "console_cmd",
    "demo",
    "hollow_cmd",
    "hollow_raw_cmd",
    "kcat",
    "log_cmd",
    "main",
    "mirror_cmd",
    "registry_cmd",
    "security_cmd",
    "top",
    "users_cmd",
    "views_cmd",
]
