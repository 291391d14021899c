"""Date formats of the pages the portal renders (the admin): one for every language."""
