"""One producer of a burst, run by the worker tests as a subprocess (like a web or API process).

    python -m tests.worker.producer deployments MANIFEST --deployments 4 --duplicates 100 --name p1
    python -m tests.worker.producer messages QUEUE --count 500 --name p1
    python -m tests.worker.producer consume QUEUE --idle 5 --name c1

`deployments`: start that many deployments of MANIFEST through `dispatch.deployment_start`, one at
a time as the appliance allows (a BusyError is the API's 409: try again); while one is in
progress, send its run message again, `--duplicates` times in all, in small bursts (what a
retrying client or a redelivery produces; the claim makes each a no-op). Prints the ids of the
deployments it started as a JSON list.

`messages`: publish `--count` bare messages {"producer": NAME, "n": n} to QUEUE through the
configured broker as fast as kombu goes. `consume`: take messages from QUEUE until none came for
`--idle` seconds, print what it got as a JSON list of [producer, n] (a second consumer beside
it must get none of the same).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import django

DUPLICATE_BURST = 5
GIVE_UP_SECONDS = 120


def deployments(manifest: Path, count: int, duplicates: int, name: str) -> None:
    from updates import selectors
    from updates.actors import Actor
    from updates.services import BusyError, dispatch
    from updates.tasknames import TASK_RUN
    from worker.celery import app

    started: list[int] = []
    deadline = time.monotonic() + GIVE_UP_SECONDS
    while len(started) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: started only {started} in {GIVE_UP_SECONDS} s")
        busy = selectors.deployment_in_progress()
        if busy is None:
            try:
                started.append(
                    dispatch.deployment_start(manifest_path=manifest, actor=Actor("user", name)).pk
                )
            except BusyError:
                pass  # another producer was quicker
            continue
        for _ in range(min(DUPLICATE_BURST, duplicates)):
            app.send_task(TASK_RUN, args=(busy.pk,))
            duplicates -= 1
        time.sleep(random.uniform(0.005, 0.03))
    print(json.dumps(started))


def messages(queue: str, count: int, name: str) -> None:
    from updates.services.dispatch import queue_folders_create
    from worker.celery import app

    queue_folders_create()
    with app.connection_for_write() as connection:
        simple = connection.SimpleQueue(queue)
        for n in range(count):
            simple.put({"producer": name, "n": n})
        simple.close()


def consume(queue: str, idle: float) -> None:
    from updates.services.dispatch import queue_folders_create
    from worker.celery import app

    queue_folders_create()
    got: list[tuple[str, int]] = []
    with app.connection_for_read() as connection:
        simple = connection.SimpleQueue(queue)
        last = time.monotonic()
        while time.monotonic() - last < idle:
            try:
                message = simple.get(timeout=0.5)
            except simple.Empty:
                continue
            got.append((message.payload["producer"], message.payload["n"]))
            message.ack()
            last = time.monotonic()
        simple.close()
    print(json.dumps(got))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    runs = sub.add_parser("deployments")
    runs.add_argument("manifest", type=Path)
    runs.add_argument("--deployments", type=int, required=True)
    runs.add_argument("--duplicates", type=int, required=True)
    bare = sub.add_parser("messages")
    bare.add_argument("queue")
    bare.add_argument("--count", type=int, required=True)
    taker = sub.add_parser("consume")
    taker.add_argument("queue")
    taker.add_argument("--idle", type=float, required=True)
    for each in (runs, bare, taker):
        each.add_argument("--name", required=True)
    args = parser.parse_args()
    django.setup()
    if args.what == "deployments":
        deployments(args.manifest, args.deployments, args.duplicates, args.name)
    elif args.what == "messages":
        messages(args.queue, args.count, args.name)
    else:
        consume(args.queue, args.idle)


if __name__ == "__main__":
    main()
