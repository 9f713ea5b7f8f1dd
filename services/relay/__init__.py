"""``reachlive relay``: live event audio → KWIKmotion → Kaltura caption responses (DESIGN section 4)."""
