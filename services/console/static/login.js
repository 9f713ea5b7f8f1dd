"use strict";
// Back to the page that asked for the token after signing in (the server accepts only /console/ paths).
document.getElementById("next").value = location.pathname.startsWith("/console/") ? location.pathname : "/console/";
