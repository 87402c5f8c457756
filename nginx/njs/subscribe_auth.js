// Signed subscribe URLs for private channels, checked at the push node with no
// round trip to the application (README: "Private channels: signed subscribe URLs").
//
// nginx/push-stream.conf sends the subscriber locations of private channels (the
// operator's naming rule) through auth_request to a server of its own on loopback whose
// only location runs `check`: 204 lets the subscriber in, 403 refuses it before
// push-stream attaches it. The check runs in a request of its own because njs gives each
// request a VM (about 30 KB here) that lives as long as the request: in the subscriber's
// request it would stay for the whole subscription. The signature travels in the query
// string, never in the channel path (push-stream reads `/` and a `.b<N>` suffix there):
//
//   /ev/private-ada?exp=1767225600&kid=app-1&sig=<43 characters>[&tr=ev]
//
//   exp  expiry, Unix seconds
//   kid  which key signed it: every key of the set is accepted, so two can overlap
//        during a rotation
//   tr   optional: the one transport (ev, ws, lp, sub) the URL is good for
//   sig  base64url, unpadded: HMAC-SHA256(key, "realtime-glue subscribe v1\n" +
//        channel + "\n" + exp + "\n" + tr), tr empty when absent
//
// glue/realtime_glue/signing.py mints the same strings (and holds the test vectors).
// The key set is loaded once, at config load, by `js_preload_object subscribe_keys`
// (nginx's master reads it as root, so the file stays 0600 root):
//
//   {"keys": {"app-1": {"secret": "<base64>"},
//             "firehose-acme": {"secret": "<base64>", "channels": ["firehose-acme"]}},
//    "scoped_prefixes": ["firehose-"]}
//
// A key with `channels` signs only those channels; a channel under a scoped prefix
// opens only with a key that lists it (a firehose customer's key: removing it revokes
// that customer and no one else, and the application's keys cannot stand in for it).
//
// Written for njs 0.7.9 (Debian 12) and later (Debian 13): require('crypto'), Buffer,
// r.args as 0.7.6 and later shape it, loops over preloaded arrays.

var crypto = require('crypto');

var CONTEXT = 'realtime-glue subscribe v1';
var BACKTRACK = /\.b[0-9]+$/;

// The 32 bytes of a signature, compared with the expected digest in a time that does not
// depend on where they differ. The base64url text is decoded first: 8 word compares cost a
// fraction of 43 character compares in njs (a non-canonical spelling of the right bytes
// passes, which gives nothing to someone without the key).
function sameDigest(digest, sig) {
    if (sig.length !== 43) {
        return false;
    }
    var given = Buffer.from(sig, 'base64url');
    if (given.length !== 32) {
        return false;
    }
    var diff = 0;
    for (var i = 0; i < 32; i += 4) {
        diff |= digest.readInt32LE(i) ^ given.readInt32LE(i);
    }
    return diff === 0;
}

// A preloaded array has no Array.prototype methods in njs 0.7.9 (no indexOf): loops.
function listed(list, item) {
    for (var i = 0; i < list.length; i++) {
        if (list[i] === item) {
            return true;
        }
    }
    return false;
}

function underAny(prefixes, channel) {
    for (var i = 0; i < prefixes.length; i++) {
        if (channel.substring(0, prefixes[i].length) === prefixes[i]) {
            return true;
        }
    }
    return false;
}

function digest(secret, channel, expires, transport) {
    var signed = CONTEXT + '\n' + channel + '\n' + expires + '\n' + transport;
    return crypto.createHmac('sha256', Buffer.from(secret, 'base64')).update(signed).digest();
}

// Why this subscriber may not have this channel, or '' when it may. Every step counts
// against connection setup (bench/subscribe_auth_bench.py): no regular expressions on
// the common path, one parse of the query string.
function problem(r) {
    // nginx/push-stream.conf asks only for /(ev|ws|lp|sub)/<private channel>, passing the
    // path as it came; decoded here as the subscriber locations decoded it. A path with
    // more slashes matches no subscriber location.
    var uri = r.uri;
    var slash = uri.indexOf('/', 1);
    var transport = uri.substring(1, slash);
    var channel = uri.substring(slash + 1);
    if (channel.indexOf('.b') >= 0) {
        // push-stream reads a trailing .b<N> as "the last N messages": the same channel.
        channel = channel.replace(BACKTRACK, '');
    }
    // From njs 0.7.6 a repeated argument is an array: refused with the rest.
    var args = r.args;
    var expires = args.exp;
    var kid = args.kid;
    var sig = args.sig;
    var bound = args.tr === undefined ? '' : args.tr;
    if (typeof expires !== 'string' || typeof kid !== 'string' || typeof sig !== 'string') {
        return 'unsigned';
    }
    if (typeof bound !== 'string') {
        return 'malformed transport';
    }
    // Also false for anything that is not a number.
    if (!(Number(expires) * 1000 > Date.now())) {
        return 'expired';
    }
    if (bound && bound !== transport) {
        return 'signed for transport ' + bound;
    }
    var key = subscribe_keys.keys[kid];
    if (typeof key !== 'object' || key === null || typeof key.secret !== 'string') {
        return 'unknown key';
    }
    if (key.channels) {
        if (!listed(key.channels, channel)) {
            return 'key not valid for this channel';
        }
    } else if (subscribe_keys.scoped_prefixes && underAny(subscribe_keys.scoped_prefixes, channel)) {
        return 'channel needs a key scoped to it';
    }
    if (!sameDigest(digest(key.secret, channel, expires, bound), sig)) {
        return 'bad signature';
    }
    return '';
}

// js_content handler of the check's own server: 204 lets the subscriber through, 403
// refuses it (auth_request passes both on). The request is the subscriber's own path and
// query, proxied as it came.
function check(r) {
    var why;
    try {
        why = problem(r);
    } catch (e) {
        why = 'check failed: ' + e.message;
    }
    if (why) {
        // info: visible where the error log asks for it, silent at the default `warn`.
        r.log('subscribe refused: ' + why + ': ' + r.uri);
        r.return(403);
        return;
    }
    r.return(204);
}

export default {check, problem, sameDigest, digest};
