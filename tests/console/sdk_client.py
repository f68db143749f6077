"""One application instance for the console's browser test: a real Python SDK session.

Run with the SDK's venv (sdk/python/.venv, made by sdk/python/install.sh):
    sdk_client.py ADDRESS INSTANCE_ID ENVIRONMENT PREFIX LABEL=VALUE
Prints "ready" once the session has its first sync, then holds it open until killed.
"""

import sys
import time

import setpoint


def main() -> None:
    address, instance_id, environment, prefix, label = sys.argv[1:6]
    key, _, value = label.partition("=")
    client = setpoint.Client(
        address,
        environment=environment,
        prefixes=[prefix],
        instance_id=instance_id,
        labels={key: value},
    )
    client.wait_ready(timeout=30)
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
