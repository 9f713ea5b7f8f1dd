"""``reachlive check kwikmotion|kaltura``: operators' pre-flight checks against the real services
(issue 17). Each check prints what the service did and exits 0 only when the pipeline can work
with it."""
