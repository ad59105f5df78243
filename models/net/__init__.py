"""URLs, the egress policy (where an onward request may go), and the HTTP pieces both sides
share."""
