"""Memory and time planned before work: what each heavy step needs (needs), what this process may use
(limits), the model's facts (shapes), the whole run priced (plan, costs) from recorded runs (records), and
the check each step's core makes before it starts (guard)."""
