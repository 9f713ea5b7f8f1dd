"""``reachlive relay``: live event audio → KWIKmotion → Kaltura caption responses (docs/design.md section 4)."""
