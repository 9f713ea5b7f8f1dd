"""``python -m services.poller [worker]``: the beat by default, the worker with ``worker``."""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        from services.poller.worker import main as worker_main

        sys.exit(worker_main(sys.argv[2:]))
    from services.poller.main import main

    sys.exit(main(sys.argv[1:]))
