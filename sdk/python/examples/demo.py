"""Setpoint Python SDK demo: read a value, then print changes as they arrive.

    scripts/dev    # in the repo root: setpoint dev on http://localhost:8000
    curl -X PUT http://localhost:8000/api/config/myapp/database/host -d '{"value": "localhost"}'
    python examples/demo.py --address 127.0.0.1:8000
    curl -X PUT http://localhost:8000/api/config/myapp/database/host -d '{"value": "new-host.internal"}'

Options: --env prod (effective values of an environment), --cache demo-cache.json (serve the last
known configuration when no edge is reachable), --token KEY, --events N (exit after N changes).
"""

from __future__ import annotations

import argparse
import sys
import threading

import setpoint


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--address", default="127.0.0.1:8000")
    p.add_argument("--env", default=None)
    p.add_argument("--prefix", default="/myapp")
    p.add_argument("--path", default="/myapp/database/host")
    p.add_argument("--cache", default=None)
    p.add_argument("--token", default=None)
    p.add_argument("--events", type=int, default=0, help="exit after this many changes (0: never)")
    args = p.parse_args()

    done = threading.Event()
    seen = 0

    def on_change(ev: setpoint.Event) -> None:
        nonlocal seen
        if ev.deleted:
            print(f"deleted {ev.path} (was {ev.old_value!r})", flush=True)
        else:
            print(f"changed {ev.path}: {ev.old_value!r} -> {ev.value!r} (version {ev.version})", flush=True)
        seen += 1
        if args.events and seen >= args.events:
            done.set()

    with setpoint.Client(
        args.address,
        environment=args.env,
        prefixes=[args.prefix],
        cache_path=args.cache,
        token=args.token,
        instance_id="python-demo",
    ) as client:
        try:
            client.wait_ready(timeout=10)
        except setpoint.UnauthorizedError as e:
            print(f"the edge refused the token: {e}", file=sys.stderr)
            return 2
        except setpoint.ReadyTimeoutError:
            # With a cache file the last known configuration is still served, flagged stale.
            print("no edge reachable yet; serving the cache file if any", file=sys.stderr)
        try:
            v = client.get(args.path)
            print(f"{args.path} = {v.value!r} (version {v.version}, stale={client.is_stale()})", flush=True)
        except setpoint.NotFoundError:
            print(f"{args.path} is not set", flush=True)
        except setpoint.NotSyncedError:
            print("nothing to serve yet", flush=True)

        client.watch(args.prefix, on_change)
        print(f"watching {args.prefix}", flush=True)
        try:
            done.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
