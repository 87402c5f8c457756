# The push node's check of signed subscribe URLs of private channels, in nginx's embedded
# Perl (Debian's libnginx-mod-http-perl). nginx/push-stream.conf loads it when
# push_stream_private_channel_prefixes is not empty; the push_stream role installs it
# (push_stream_perl_dir), tests/support/push_node.py uses this copy.
#
# It runs in the subscriber's own request: a perl_set handler sets $subscribe_refused
# from `refused`, and the private subscriber locations answer 403 when it is not empty,
# before the module (push-stream or nchan) attaches the subscriber. One interpreter per
# worker, shared by every request: nothing is kept per subscriber, no subrequest, no
# loopback hop.
#
#   perl_modules <this directory's parent>;
#   perl_set $subscribe_refused
#       'use RealtimeGlue::SubscribeAuth "<key set>"; \&RealtimeGlue::SubscribeAuth::refused';
#   ... location ~ ^/ev/(?<channel>private-[^/]+)$ { if ($subscribe_refused) { return 403; } ... }
#
# nginx evaluates a handler string that starts with "use " in the master, at config load
# (start and reload), as root: `import` reads the key set there, so the file stays 0600
# root, and a reload reads a changed key set. A key set that cannot be read fails the
# load and `nginx -t` (nginx says only `eval_pv(...) failed`; the reason goes to stderr,
# which is the error log once nginx runs). The URL contract is glue/realtime_glue/signing.py's:
#
#   /ev/private-ada?exp=1767225600&kid=app-1&sig=<43 characters>[&tr=ev]
#
#   exp  expiry, Unix seconds
#   kid  which key signed it (every key of the set is accepted)
#   tr   optional: the one transport (ev, ws, lp, sub) the URL is good for
#   sig  base64url, unpadded: HMAC-SHA256(key, "realtime-glue subscribe v1\n" +
#        channel + "\n" + exp + "\n" + tr), tr empty when absent
#
# Key set: {"keys": {"<id>": {"secret": "<base64>", "channels": [...]}}, "scoped_prefixes": [...]}.
# Only core Perl modules (Digest::SHA, JSON::PP, MIME::Base64).
package RealtimeGlue::SubscribeAuth;

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_base64);
use JSON::PP ();
use MIME::Base64 qw(decode_base64);

my $CONTEXT = "realtime-glue subscribe v1";

# key id -> {secret => raw bytes, channels => {channel => 1} or undef}
my %keys;
# A match for the channels under a scoped prefix (one that matches nothing when none).
my $scoped = qr/(?!)/;

sub import {
    my ($class, $path) = @_;
    return unless defined $path;
    # nginx reports a failed handler string without Perl's reason: say it on stderr.
    eval { load_key_set($path); 1 } or do { warn "realtime-glue subscribe check: $@"; die $@ };
    return;
}

sub load_key_set {
    my ($path) = @_;
    open my $file, '<:raw', $path or die "subscribe key set $path: $!\n";
    my $text = do { local $/; <$file> };
    close $file;
    my $set = eval { JSON::PP->new->decode($text) };
    die "subscribe key set $path: not valid JSON: $@" unless ref $set eq 'HASH';
    my $entries = $set->{keys} // {};
    die "subscribe key set $path: `keys` must be an object\n" unless ref $entries eq 'HASH';
    my %loaded;
    for my $id (keys %$entries) {
        my $entry = $entries->{$id};
        die "subscribe key set $path: key $id needs a base64 `secret`\n"
            unless ref $entry eq 'HASH' && defined $entry->{secret} && !ref $entry->{secret};
        my $secret = decode_base64($entry->{secret});
        die "subscribe key set $path: key $id: the secret has fewer than 32 bytes\n" if length $secret < 32;
        my $channels = $entry->{channels};
        $loaded{$id} = {
            secret   => $secret,
            channels => ref $channels eq 'ARRAY' ? { map { $_ => 1 } @$channels } : undef,
        };
    }
    my $prefixes = $set->{scoped_prefixes} // [];
    die "subscribe key set $path: `scoped_prefixes` must be a list\n" unless ref $prefixes eq 'ARRAY';
    %keys = %loaded;
    $scoped = @$prefixes ? qr/\A(?:@{[ join '|', map { quotemeta } @$prefixes ]})/ : qr/(?!)/;
    return scalar keys %keys;
}

# The expected signature, base64url without padding (Digest::SHA's base64 has none).
sub signature {
    my ($secret, $channel, $expires, $transport) = @_;
    my $sig = hmac_sha256_base64("$CONTEXT\n$channel\n$expires\n$transport", $secret);
    $sig =~ tr{+/}{-_};
    return $sig;
}

# The query string signing.py writes (exp, kid, optional tr, sig, in this order, nothing
# else): one match. Anything else goes through `arguments`.
my $SIGNED_QUERY = qr/\Aexp=([0-9]{1,15})&kid=([A-Za-z0-9_.-]{1,64})(?:&tr=([a-z]{1,8}))?&sig=([A-Za-z0-9_-]{43})\z/;

# exp, kid, sig and tr from any query string (other arguments, percent-encoding), or a
# reason to refuse.
sub arguments {
    my ($query) = @_;
    my %arg;
    for my $pair (split /&/, $query // '') {
        my ($name, $value) = split /=/, $pair, 2;
        next unless $name eq 'exp' || $name eq 'kid' || $name eq 'sig' || $name eq 'tr';
        # A repeated argument is refused: which one counts would be a guess.
        return "repeated $name" if exists $arg{$name};
        $value //= '';
        $value =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
        $arg{$name} = $value;
    }
    return 'unsigned' unless defined $arg{exp} && defined $arg{kid} && defined $arg{sig};
    return 'malformed expiry' unless $arg{exp} =~ /\A[0-9]{1,15}\z/;
    return ('', @arg{qw(exp kid tr sig)});
}

# Why a subscriber may not have `channel` over `transport` with this query string, or ''
# when it may. Every step counts against connection setup (bench/subscribe_auth_bench.py):
# one match of the path, one of the query string, one HMAC.
sub problem {
    my ($path, $query, $now) = @_;
    # /<transport>/<channel>: the subscriber locations matched it.
    my $slash = index($path, '/', 1);
    my $transport = substr($path, 1, $slash - 1);
    my $channel = substr($path, $slash + 1);
    # push-stream reads a trailing .b<N> as "the last N messages": the same channel.
    $channel =~ s/\.b[0-9]+\z// if index($channel, '.b') >= 0;
    my ($expires, $kid, $bound, $sig) = ($query // '') =~ $SIGNED_QUERY;
    unless (defined $sig) {
        (my $why, $expires, $kid, $bound, $sig) = arguments($query);
        return $why if $why;
    }
    $bound //= '';
    return 'expired' unless $expires > $now;
    return "signed for transport $bound" if length $bound && $bound ne $transport;
    my $key = $keys{$kid} or return 'unknown key';
    if ($key->{channels}) {
        return 'key not valid for this channel' unless $key->{channels}{$channel};
    }
    elsif ($channel =~ $scoped) {
        return 'channel needs a key scoped to it';
    }
    # Compared in a time that does not depend on where they differ: xor, then count the
    # bytes that are not zero (tr/// walks the whole string).
    my $expected = signature($key->{secret}, $channel, $expires, $bound);
    return 'bad signature' unless length $sig == length $expected && (($expected ^ $sig) =~ tr/\0//c) == 0;
    return '';
}

# perl_set handler of $subscribe_refused: the reason a private subscriber is refused, or
# '' to let it in. The path is the decoded one the subscriber locations matched.
sub refused {
    my ($r) = @_;
    my $why = eval { problem($r->uri, scalar $r->args, time) };
    return defined $why ? $why : "check failed: $@";
}

1;
