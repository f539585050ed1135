"""Drives Apache's C++ RocketMQ client (librocketmq, through PyPI's `rocketmq` 0.4.4) for
Flotilla's end-to-end tests (tests/tests/cpp_client.rs).

The Rust tests start our real nameserver and broker, then run this script as a producer or
a consumer and check what it reports. Every result is one JSON object per line, so the test
reads facts, not log text:

  produce  sends --count messages one way (sync, async, oneway, orderly, batch) and prints
           one line per message ({"body", "ok", "msg_id", "error"}), then {"done": ...}.
  consume  starts a push consumer and appends one line per delivery to --out
           ({"body", "tags", "keys", "reconsume_times", "topic", ...}), after a first
           {"started": true}. With --fail-times N it fails each message N times
           (RECONSUME_LATER), so the broker's retry path is exercised. It runs until killed.

With --access-key and --secret-key (and --channel, default "LOCAL") the client signs every
request with ACL 1.0 credentials (`set_session_credentials`), for brokers with aclEnable=true.

The script never talks to anything but the --ns nameserver and the brokers it names, which
the tests bind to 127.0.0.1.
"""

import argparse
import json
import os
import sys
import threading
import time

from rocketmq.client import Message, MessageModel, Producer, PushConsumer


def emit(stream, obj):
    stream.write(json.dumps(obj, sort_keys=True) + "\n")
    stream.flush()


def make_message(args, i):
    msg = Message(args.topic)
    body = "%s-%d" % (args.prefix, i)
    msg.set_body(body)
    if args.tag:
        msg.set_tags(args.tag)
    if args.keys:
        msg.set_keys("%s-%d" % (args.keys, i))
    if args.delay_level:
        msg.set_delay_time_level(args.delay_level)
    for kv in args.prop or []:
        k, v = kv.split("=", 1)
        msg.set_property(k, v)
    return msg, body


def produce(args):
    producer = Producer(args.group, timeout=args.timeout_ms)
    producer.set_namesrv_addr(args.ns)
    if args.access_key:
        producer.set_session_credentials(args.access_key, args.secret_key, args.channel)
    producer.start()
    out = sys.stdout
    sent = failed = 0
    try:
        if args.mode == "batch":
            for start in range(0, args.count, args.batch_size):
                idx = range(start, min(start + args.batch_size, args.count))
                msgs = [make_message(args, i) for i in idx]
                try:
                    r = producer.send_batch([m for m, _ in msgs])
                    ok = int(r.status) == 0
                    for _, body in msgs:
                        emit(out, {"body": body, "ok": ok, "msg_id": r.msg_id})
                    sent += len(msgs) if ok else 0
                    failed += 0 if ok else len(msgs)
                except Exception as e:  # one failed batch is a result, not a crash
                    for _, body in msgs:
                        emit(out, {"body": body, "ok": False, "error": str(e)})
                    failed += len(msgs)
        elif args.mode == "async":
            lock = threading.Condition()
            pending = {"n": 0}
            results = []

            def done(body, ok, extra):
                with lock:
                    results.append((body, ok, extra))
                    pending["n"] -= 1
                    lock.notify_all()

            for i in range(args.count):
                msg, body = make_message(args, i)
                with lock:
                    # A bounded window: the client's queue is not unbounded either.
                    while pending["n"] >= 16:
                        lock.wait(1.0)
                    pending["n"] += 1
                try:
                    producer.send_async(
                        msg,
                        lambda r, body=body: done(body, int(r.status) == 0, {"msg_id": r.msg_id}),
                        lambda e, body=body: done(body, False, {"error": str(e)}),
                    )
                except Exception as e:
                    done(body, False, {"error": str(e)})
            deadline = time.time() + args.timeout_ms / 1000.0 + 10
            with lock:
                while pending["n"] > 0 and time.time() < deadline:
                    lock.wait(0.5)
            for body, ok, extra in results:
                rec = {"body": body, "ok": ok}
                rec.update(extra)
                emit(out, rec)
                sent += 1 if ok else 0
                failed += 0 if ok else 1
            failed += pending["n"]
        else:
            for i in range(args.count):
                msg, body = make_message(args, i)
                try:
                    if args.mode == "sync":
                        r = producer.send_sync(msg)
                        ok = int(r.status) == 0
                        emit(out, {"body": body, "ok": ok, "msg_id": r.msg_id, "offset": r.offset})
                    elif args.mode == "oneway":
                        producer.send_oneway(msg)
                        ok = True
                        emit(out, {"body": body, "ok": True})
                    elif args.mode == "orderly":
                        r = producer.send_orderly(msg, args.shard)
                        ok = int(r.status) == 0
                        emit(out, {"body": body, "ok": ok, "msg_id": r.msg_id, "offset": r.offset})
                    else:
                        raise SystemExit("unknown mode %s" % args.mode)
                    sent += 1 if ok else 0
                    failed += 0 if ok else 1
                except Exception as e:
                    emit(out, {"body": body, "ok": False, "error": str(e)})
                    failed += 1
    finally:
        producer.shutdown()
    emit(out, {"done": True, "sent": sent, "failed": failed})


def consume(args):
    model = MessageModel.BROADCASTING if args.model == "broadcasting" else MessageModel.CLUSTERING
    consumer = PushConsumer(args.group, orderly=args.orderly, message_model=model)
    consumer.set_namesrv_addr(args.ns)
    if args.access_key:
        consumer.set_session_credentials(args.access_key, args.secret_key, args.channel)
    if args.instance:
        consumer.set_instance_name(args.instance)
    consumer.set_thread_count(2)
    # One message per listener call: the C++ client fails a whole batch when one message of
    # it fails, which would blur what each message's reconsume count means.
    consumer.set_message_batch_max_size(1)
    out = open(args.out, "a", encoding="utf-8")
    lock = threading.Lock()
    failures = {}

    def on_message(msg):
        body = msg.body.decode("utf-8", "replace")
        rec = {
            "body": body,
            "topic": msg.topic,
            "tags": (msg.tags or b"").decode("utf-8", "replace"),
            "keys": (msg.keys or b"").decode("utf-8", "replace"),
            "reconsume_times": msg.reconsume_times,
            "queue_id": msg.queue_id,
            "queue_offset": msg.queue_offset,
            "msg_id": msg.id,
            "born": msg.born_timestamp,
            "stored": msg.store_timestamp,
            "instance": args.instance or "",
        }
        with lock:
            n = failures.get(body, 0)
            fail = n < args.fail_times
            if fail:
                failures[body] = n + 1
            rec["failed"] = fail
            emit(out, rec)
        if fail:
            raise RuntimeError("failing %s on purpose (%d of %d)" % (body, n + 1, args.fail_times))

    consumer.subscribe(args.topic, on_message, args.expr)
    consumer.start()
    emit(out, {"started": True, "instance": args.instance or ""})
    try:
        while True:
            time.sleep(3600)
    finally:
        consumer.shutdown()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("produce")
    pr.add_argument("--ns", required=True)
    pr.add_argument("--group", required=True)
    pr.add_argument("--topic", required=True)
    pr.add_argument("--mode", default="sync", choices=["sync", "async", "oneway", "orderly", "batch"])
    pr.add_argument("--count", type=int, default=10)
    pr.add_argument("--batch-size", type=int, default=10)
    pr.add_argument("--prefix", default="m")
    pr.add_argument("--tag", default="")
    pr.add_argument("--keys", default="")
    pr.add_argument("--delay-level", type=int, default=0)
    pr.add_argument("--shard", type=int, default=0, help="orderly: the queue selector's argument")
    pr.add_argument("--prop", action="append", help="extra property k=v")
    pr.add_argument("--timeout-ms", type=int, default=5000)
    co = sub.add_parser("consume")
    co.add_argument("--ns", required=True)
    co.add_argument("--group", required=True)
    co.add_argument("--topic", required=True)
    co.add_argument("--expr", default="*")
    co.add_argument("--model", default="clustering", choices=["clustering", "broadcasting"])
    co.add_argument("--orderly", action="store_true")
    co.add_argument("--fail-times", type=int, default=0)
    co.add_argument("--instance", default="")
    co.add_argument("--out", required=True)
    for sp in (pr, co):
        sp.add_argument("--access-key", default="", help="ACL 1.0 AccessKey (signs requests)")
        sp.add_argument("--secret-key", default="", help="ACL 1.0 secret key")
        sp.add_argument("--channel", default="LOCAL", help="the C++ client's OnsChannel field")
    args = p.parse_args()
    if args.cmd == "produce":
        produce(args)
    else:
        consume(args)


if __name__ == "__main__":
    main()
