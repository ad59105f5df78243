"""URLs and the egress policy: where an onward request may go."""
