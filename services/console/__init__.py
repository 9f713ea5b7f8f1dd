"""The operator's console (issue 20): ``reachlive status``, ``event``, ``captions``, ``usage`` and
``admin``, each reading (and, for ``admin``, steering) the running services through Redis only."""
