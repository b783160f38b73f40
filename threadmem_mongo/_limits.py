"""Size limits shared by the pure core and the stores."""

from __future__ import annotations

#: MongoDB refuses documents larger than this (16 MiB).
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

#: Room kept free under the limit for the update operators and field overhead, so that an
#: estimate that stays under the budget never reaches the server's hard limit.
DOCUMENT_HEADROOM_BYTES = 64 * 1024

#: The most a thread document may hold by our own estimate.
DOCUMENT_BUDGET_BYTES = MAX_DOCUMENT_BYTES - DOCUMENT_HEADROOM_BYTES

#: Bytes added per array element on top of the element's own encoding: the type byte and
#: the decimal index used as the key ("123456\\x00"), rounded up.
ARRAY_ELEMENT_OVERHEAD_BYTES = 12
