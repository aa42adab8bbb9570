"""`credits simulate`: what a catalog does over weeks, on a simulated clock, in memory."""
