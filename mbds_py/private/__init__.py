"""A hospital's (or Internet medicine platform's) private chain: slips, validation, replicas, receipts."""
