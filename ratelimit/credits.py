"""What a call costs where a platform charges credits, not calls (Zoho CRM).

Zoho's costs are step-wise, not linear (destinations.md §3.4): a write costs one
credit per ten records, a Bulk Write job 500 whatever its size, a COQL query
1, 2 or 3 by its LIMIT. A client asks here before a call and passes the cost
to its governor, so the credit budget is spent the way Zoho will count it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

ZOHO_WRITES = frozenset({"insert", "update", "upsert"})
ZOHO_FLAT: Mapping[str, int] = {
    "get_records_cvid": 3,
    "convert_lead": 5,
    "send_mail": 20,
    "merge": 50,
    "bulk_read": 50,
    "bulk_write": 500,
    "create_custom_module": 500,
}
"""Calls with a flat cost, whatever they carry (destinations.md §3.4)."""
ZOHO_COQL_TIERS = ((200, 1), (1000, 2), (2000, 3))
"""COQL LIMIT up to → credits (destinations.md §3.4)."""


def zoho_credits(operation: str, records: int = 1) -> int:
    """Credits Zoho charges for one call of ``operation`` carrying ``records``."""
    if operation in ZOHO_WRITES:
        return max(1, math.ceil(records / 10))
    if operation in ZOHO_FLAT:
        return ZOHO_FLAT[operation]
    if operation == "coql":
        for limit, cost in ZOHO_COQL_TIERS:
            if records <= limit:
                return cost
        raise ValueError(f"a COQL query returns at most 2,000 records, not {records}")
    if operation in ("tags", "mass_delete"):
        per = 50 if operation == "tags" else 100
        return max(1, math.ceil(records / per))
    return 1
