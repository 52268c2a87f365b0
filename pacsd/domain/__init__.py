"""Pure rules and values, free of any protocol, database or file: errors,
UIDs, reading a header, the query model, outcomes, Part 10 layout, budgets."""
