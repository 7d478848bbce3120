#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into corpus/<target>/ (small files).
Run once; the files are kept in the source tree. Re-running rewrites the same files."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def mb(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


REPLID = b"5f1c0e6a3b2d4c8e9f00112233445566778899aa"


def lp(*parts):
    """Strings for fuzz_status_render: each one a length byte, then its bytes."""
    return b"".join(bytes([len(p)]) + p for p in parts)
MARK = b"0123456789abcdef0123456789abcdef01234567"

# fuzz_aligner: the header of fuzz_aligner.cpp, then commands (op byte: db << 5 | kind).
AL_NONE, AL_FLIP_FRESH, AL_FLIP_LIVE, AL_COPIED, AL_WRONG_START_DB, AL_DROP, AL_EXTRA_MARKER, AL_NO_MARKER, \
    AL_OTHER_LIVE_MARKER, AL_PREPEND, AL_OTHER_DB, AL_SWAP, AL_CHANGE_BYTE, AL_MOVE_PINGS, AL_DUPLICATE, \
    AL_LIVE_TOO_EARLY, AL_LIVE_TOO_LATE = range(17)
DB_KEEP, DB0, DB1, DB5, DBN = 0, 4, 5, 6, 7


def al_text(s):
    s = s if isinstance(s, bytes) else s.encode()
    return bytes([len(s)]) + s


def al_set(db, key, val):
    return bytes([db << 5 | 0]) + al_text(key) + al_text(val)


def al_incr(db):
    return bytes([db << 5 | 1])


def al_multi(db, writes):  # writes: (kind byte, args bytes) for 1..3 writes
    return bytes([db << 5 | (len(writes) - 1) << 3 | 7]) + b"".join(writes)


def aligner(k, prefix, window, suffix, fork, corruption, commands, param=0, param2=0, first=1000000, pings=0x9e3779b9):
    return (bytes([k - 2]) + (first - 1).to_bytes(4, "little") + bytes([prefix, window, suffix])
            + fork.to_bytes(2, "little") + bytes([corruption]) + param.to_bytes(2, "little") + bytes([param2])
            + pings.to_bytes(4, "little") + commands)


AL_DBS = (al_set(DB0, "a", "1") + al_set(DB1, "b", "2") + al_set(DB5, "c", "\r\n*1\r\n$4\r\nPING\r\n")
          + al_incr(DB_KEEP) + al_set(DB_KEEP, "d", "") + bytes([DBN << 5 | 0, 7]) + al_text("e") + al_text("7")
          + al_incr(DB0) + al_set(DB5, "f", "x" * 20) + al_incr(DB_KEEP) + al_set(DB1, "g", "PING"))
AL_BLOCKS = (al_set(DB1, "a", "1") + al_multi(DB1, [bytes([1]), bytes([0]) + al_text("t") + al_text("v")])
             + al_multi(DB0, [bytes([1])]) + al_set(DB5, "z", "9") + al_multi(DB5, [bytes([1]), bytes([1]), bytes([1])]))
AL_WINDOW = (mb("SET", "a", "1") + mb("PING") + b"*2\r\n$6\r\nSELECT\r\n$1\r\n5\r\n" + mb("INCR", "n")
             + mb("MULTI") + mb("SET", "t", "1") + mb("EXEC") + mb("SELECT", "0") + mb("PUBLISH", "__psync_proxy__", "nonce-3"))

seeds = {
    "fuzz_request_parser": {
        "ping_multibulk": mb("PING"),
        "redis7_handshake": mb("PING") + mb("AUTH", "default", "secret") + mb("REPLCONF", "listening-port", "6381")
        + mb("REPLCONF", "capa", "eof", "capa", "psync2") + mb("PSYNC", "?", "-1"),
        "redis7_reconnect": mb("PSYNC", REPLID, "123456789") + mb("REPLCONF", "ACK", "123456789", "FACK", "42"),
        "redis26_inline": b"PING\r\nAUTH secret\r\nREPLCONF listening-port 6380\r\nSYNC\r\n",
        "inline_quoting": b"set \"a b\\x41\\n\" 'c\\'d' e\r\nINFO replication\n",
        "keepalives": b"\n\r\n\n" + mb("REPLCONF", "ACK", "1") + b"\n",
        "empty_multibulk": b"*0\r\n*-1\r\n" + mb("ROLE"),
        "bad_bulk_len": b"*1\r\n$-1\r\n",
        "bad_missing_dollar": b"*2\r\n$1\r\na\r\n*1\r\n",
        "bad_unbalanced": b"\"unbalanced\r\n",
        "bad_count": b"*99999999\r\n",
        "partial": b"*3\r\n$5\r\nPSYNC\r\n$40\r\n" + REPLID[:20],
        "psync_odd_args": mb("PSYNC", REPLID, "-5") + mb("PSYNC", "?", "99999999999999999999") + mb("PSYNC")
        + mb("REPLCONF", "listening-port", "x"),
        "big_arg": mb("AUTH", "x" * 300) + b"PING " + b"y" * 100 + b"\r\n",
        "rdb_only": mb("REPLCONF", "rdb-only", "1") + b"SYNC\r\nQUIT\r\n",
    },
    "fuzz_legacy_stream": {
        "redis26_stream": mb("SET", "k0", "v0") + b"select 1\r\n" + mb("SET", "k1", "v1") + mb("PING") + b"\n"
        + b"select 0\r\n" + mb("INCR", "counter"),
        "redis24_stream": b"PING\r\n" + mb("SET", "a", "b") + b"select 3\r\nPING\r\n" + mb("LPUSH", "l", "x"),
        "multi_exec_eval": mb("MULTI") + mb("SET", "t", "1") + mb("INCRBY", "c", "10") + mb("EXEC")
        + mb("EVAL", "redis.call('set', KEYS[1], ARGV[1]) return 1", "1", "k", "v"),
        "binary_values": mb("SET", b"k\r\n*1", b"\x00\xff\r\n$4\r\nPING\r\n*") + mb("PING", "with arg"),
        "inline_set_quoted": b"set k \"a b\\r\\n\"\n" + b"pInG\n\r\n",
        "large_value": mb("SET", "big", "v" * 1000) + mb("PING", "p" * 300),
        "empty_commands": b"*0\r\n*-1\r\n" + mb("DEL", "x"),
        "error_reply_in_stream": mb("SET", "a", "1") + b"-ERR Unrecognized REPLCONF option: ack\r\n",
        "status_in_stream": mb("SET", "a", "1") + b"+OK\r\n",
        "bulk_where_command": mb("SET", "a", "1") + b"$3\r\nfoo\r\n",
        "cut_mid_command": mb("SET", "a", "1") + b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$10\r\n01234",
    },
    "fuzz_payload_reader": {
        "sync_len": b"\n\n$10\r\n0123456789" + mb("PING") + mb("SET", "a", "b"),
        "sync_crlf_keepalives": b"\r\n\n\r\n$3\r\nabc",
        "refused_bgsave": b"-ERR Unable to perform background save\r\n",
        "refused_no_link": b"\n-ERR Can't SYNC while not connected with my master\r\n",
        "fullresync": b"+FULLRESYNC " + REPLID + b" 100\r\n\n$9\r\nREDIS0009" + mb("SELECT", "0"),
        "continue_id": b"+CONTINUE " + REPLID + b"\r\n" + mb("PING"),
        "continue_bare": b"+CONTINUE\r\n",
        "eof_marked": b"$EOF:" + MARK + b"\r\nREDIS0009 rdb bytes " + MARK[:10] + b" more" + MARK + mb("PING"),
        "empty_payload": b"$0\r\n" + mb("PING"),
        "truncated": b"$100\r\nREDIS0006\x00\x01",
        "bad_len": b"$-1\r\n",
        "bad_len_text": b"$abc\r\n",
        "not_resp": b"hello world\r\n",
        "long_line": b"+" + b"x" * 600 + b"\r\n",
    },
    "fuzz_aligner": {
        "dbs_fork_mid": aligner(5, 2, 10, 2, 4, AL_NONE, AL_DBS * 2),
        "fork_after_prev": aligner(3, 0, 8, 1, 0, AL_NONE, AL_DBS),
        "fork_at_marker": aligner(9, 1, 8, 0, 8, AL_NONE, AL_DBS),
        "multi_exec": aligner(4, 1, 16, 1, 3, AL_NONE, AL_BLOCKS * 2),
        "copied_buffer": aligner(6, 1, 10, 1, 2, AL_COPIED, AL_DBS * 2, param=3),
        "wrong_start_db": aligner(6, 1, 10, 1, 2, AL_WRONG_START_DB, AL_DBS * 2, param2=5),
        "drop_command": aligner(7, 0, 10, 0, 1, AL_DROP, AL_DBS, param=4),
        "extra_marker": aligner(7, 0, 10, 0, 1, AL_EXTRA_MARKER, AL_DBS, param=2, param2=1),
        "prepend_earlier_fork": aligner(8, 3, 6, 0, 1, AL_PREPEND, AL_DBS * 2, param=5, param2=1),
        "other_db": aligner(8, 0, 10, 0, 2, AL_OTHER_DB, AL_BLOCKS, param=1, param2=3),
        "change_byte": aligner(8, 0, 10, 0, 2, AL_CHANGE_BYTE, AL_DBS, param=2, param2=1),
        "move_pings": aligner(8, 0, 10, 0, 2, AL_MOVE_PINGS, AL_DBS),
        "live_too_early": aligner(8, 0, 10, 0, 2, AL_LIVE_TOO_EARLY, AL_DBS),
        "live_too_late": aligner(8, 2, 10, 0, 2, AL_LIVE_TOO_LATE, AL_DBS * 2, param2=4),
        "raw_window": AL_WINDOW,
        "raw_bad_select": mb("SET", "a", "1") + mb("SELECT", "01") + mb("SET", "b", "2"),
    },
    "fuzz_http_request": {
        "get_status": b"GET /status HTTP/1.1\r\nHost: 127.0.0.1:8380\r\nUser-Agent: curl/7.88\r\nAccept: */*\r\n\r\n",
        "get_healthz_10": b"GET /healthz HTTP/1.0\r\n\r\n",
        "head_query": b"HEAD /status?pretty=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        "post_body": b"POST /status HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "chunked": b"GET /nope HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "garbage": b"garbage\r\n\r\n",
        "long_header": b"GET /status HTTP/1.1\r\nX-Long: " + b"a" * 1000 + b"\r\n\r\n",
        "absolute_url": b"GET http://127.0.0.1:8380/status HTTP/1.1\r\n\r\n",
        "lf_only": b"GET /healthz HTTP/1.1\nHost: x\n\n",
        "partial": b"GET /stat",
        "resp_on_http_port": mb("PING"),
    },
    # Length-prefixed strings that fill the StatusView's string fields in turn.
    "fuzz_status_render": {
        "latin1_error": lp(b"ERR caf\xe9 closed", b"2.6.17", REPLID, b"the master refused SYNC: ERR caf\xe9"),
        "hostile_replid": lp(b"\xe9" * 20 + b"\xff" * 20, b"FULLRESYNC \x80\x81 100", b"\x01garb\xe9ge"),
        "bad_utf8_version": lp(b"2.6.\xff\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"),
        "controls_and_quotes": lp(b"a\"b\\c\nd\re\x00f", b"\x7f\x1b[31m", b"</script>", b"\u0000"),
        "valid_utf8": lp("caf\u00e9 \u2603 \U0001f600".encode(), b"127.0.0.1:6380", b"online"),
        "long": lp(b"x" * 255, b"\xff" * 255, b"y" * 10),
        "empty": b"",
    },
}

for target, files in seeds.items():
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(files)} seeds")
