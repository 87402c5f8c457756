"""Firehose customers: their names, and the channel and key id each one gets."""

from __future__ import annotations

import re

from ..channels import channel_problem

DEFAULT_CHANNEL_PREFIX = "firehose-"
_CUSTOMER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def customer_channel(prefix: str, customer: str) -> str:
    """The customer's channel, e.g. firehose-acme. Its signing key has the same id
    (the key set entry scoped to this one channel)."""
    return prefix + customer


def customer_problem(customer, prefix: str = DEFAULT_CHANNEL_PREFIX) -> str | None:
    """Why `customer` cannot be a firehose customer's name, or None when it can."""
    if not isinstance(customer, str) or not _CUSTOMER.match(customer):
        return f"customer {customer!r} must be 1-64 characters of A-Z a-z 0-9 _ -"
    return channel_problem(customer_channel(prefix, customer), wildcard_prefix="")
