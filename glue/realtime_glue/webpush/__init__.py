"""Web Push (RFC 8030) for readers who are not on the site: one job per module.

    ece            message encryption (RFC 8291 over RFC 8188's aes128gcm), both ways
    vapid          the application server's key and its signed `Authorization` (RFC 8292)
    token          who may register a subscription: an HMAC over user id and expiry
    subscriptions  a browser's PushSubscription, checked, and every user's in Redis
    request        one push message for one subscription: the body and its headers
    sender         POSTs to push services (many https hosts) and what each answer means
    connections    keep-alive TLS connections per push service origin
    backlog        deliveries a push service refused for now, per origin, retried later
    ratelimit      at most N notifications per user per window
    deadletter     deliveries refused for good, with the reason
    endpoint       the HTTP endpoint a page posts its PushSubscription to
    commands       `realtime-glue webpush keygen|token|subscriptions|send-test|status`

The pipeline stage that uses them is publishers/webpush.py.
"""
