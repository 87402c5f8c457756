"""The firehose: every message of chosen feeds, anonymized, on one channel per customer.

The publisher is ../publishers/firehose.py (a pipeline stage); here are its
customers and what Redis records of them (ledger.py), and `realtime-glue
firehose ...` (commands.py).
"""
