"""Reports written at the end of each phase, as JSON for machines and Markdown for people."""
