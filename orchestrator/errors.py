"""The one error tree. Every error carries one line that says what is wrong and what to do.

    GreenwiseError
    ├── BadInput            the user can fix it (arguments, files, config): exit 2
    └── OperationalError    something outside failed (a cluster, DNS, Prometheus down; a
                            migration rolled back; a timeout): exit 1, saying what was done

Third-party exceptions (pykube, kubernetes, requests, httpx, dnspython, google-cloud) are mapped
onto this tree where those libraries are called; nothing else escapes to the CLI.
"""


class GreenwiseError(Exception):
    """Base of every error greenwise-mc raises on purpose."""

    exit_code = 1


class BadInput(GreenwiseError):
    """Bad input or an unusable environment the user controls: exit 2, nothing changed."""

    exit_code = 2


class OperationalError(GreenwiseError):
    """Something greenwise-mc depends on failed at run time: exit 1, with what was done."""

    exit_code = 1
