"""Readers across nodes: how many browsers read each channel now, summed over every push node.

`realtime-glue readers` (glue-readers.service) reads each push node's channel
statistics on its cluster listener once a round, sums the subscribers per
channel, exports Prometheus gauges and publishes the counts on a channel of
their own (`readers`) for pages to show: the changes each round, and a full
snapshot now and then. One job per module:

    node_client  what it asks of one push node: its readers per channel, and a publish
    tally        the sum over the nodes, and what changed since the last message
    messages     the messages on the readers channel, each under the nodes' size limit
    lease        only one readers unit publishes: the holder of a lease in Redis
    metrics      its Prometheus gauges
    service      the rounds, the lease and systemd (what `realtime-glue readers` runs)
"""
