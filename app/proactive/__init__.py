"""Journey-aware proactive messages: rules, the decision for one visitor, and per-rule analytics."""
