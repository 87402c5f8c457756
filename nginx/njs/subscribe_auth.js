// Signed subscribe URLs for private channels, checked at the push node with no
// round trip to the application (README: "Private channels: signed subscribe URLs").
//
// nginx/push-stream.conf asks `refused` (through js_set) only for channels that the
// operator's naming rule makes private; a non-empty answer is a 403 before push-stream
// attaches the subscriber. The signature travels in the query string, never in the
// channel path (push-stream reads `/` and a `.b<N>` suffix there):
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
// nginx's $arg_ variables (raw, first occurrence) rather than r.args, whose shape
// changed in 0.7.6.

var crypto = require('crypto');

var CONTEXT = 'realtime-glue subscribe v1';
var SUBSCRIBER = /^\/(ev|ws|lp|sub)\/([^\/]+)$/;
var SIGNATURE = /^[A-Za-z0-9_-]{43}$/;
var EXPIRY = /^[0-9]{1,12}$/;
var BACKTRACK = /\.b[0-9]+$/;

// Equal strings in a time that depends on their length only (never on where they differ).
function sameText(a, b) {
    if (a.length !== b.length) {
        return false;
    }
    var diff = 0;
    for (var i = 0; i < a.length; i++) {
        diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
    }
    return diff === 0;
}

// A preloaded array has no Array.prototype methods in njs 0.7.9 (no indexOf): a loop.
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

function signature(secret, channel, expires, transport) {
    var signed = CONTEXT + '\n' + channel + '\n' + expires + '\n' + transport;
    return crypto.createHmac('sha256', Buffer.from(secret, 'base64')).update(signed).digest('base64url');
}

// Why this subscriber may not have this channel, or '' when it may.
function problem(r) {
    var v = r.variables;
    // The subscriber locations' own pattern, on the decoded path nginx matches them with.
    var where = SUBSCRIBER.exec(r.uri);
    if (!where) {
        return 'not a subscriber location';
    }
    var transport = where[1];
    // push-stream reads a trailing .b<N> as "the last N messages": the same channel.
    var channel = where[2].replace(BACKTRACK, '');
    var expires = v.arg_exp || '';
    var kid = v.arg_kid || '';
    var sig = v.arg_sig || '';
    var bound = v.arg_tr || '';
    if (!sig || !expires || !kid) {
        return 'unsigned';
    }
    if (!SIGNATURE.test(sig) || !EXPIRY.test(expires)) {
        return 'malformed signature or expiry';
    }
    if (Number(expires) * 1000 <= Date.now()) {
        return 'expired';
    }
    if (bound && bound !== transport) {
        return 'signed for transport ' + bound;
    }
    var keys = (subscribe_keys && subscribe_keys.keys) || {};
    var key = Object.prototype.hasOwnProperty.call(keys, kid) ? keys[kid] : null;
    if (!key || typeof key.secret !== 'string') {
        return 'unknown key';
    }
    if (key.channels) {
        if (!listed(key.channels, channel)) {
            return 'key not valid for this channel';
        }
    } else if (underAny(subscribe_keys.scoped_prefixes || [], channel)) {
        return 'channel needs a key scoped to it';
    }
    if (!sameText(signature(key.secret, channel, expires, bound), sig)) {
        return 'bad signature';
    }
    return '';
}

// js_set handler: '1' refuses the subscriber (403), '' lets it through.
function refused(r) {
    var why;
    try {
        why = problem(r);
    } catch (e) {
        why = 'check failed: ' + e.message;
    }
    if (why) {
        // info: visible where the error log asks for it, silent at the default `warn`.
        r.log('subscribe refused: ' + why + ': ' + r.uri);
        return '1';
    }
    return '';
}

export default {refused, problem, sameText, signature};
