"""Light frames written by capture programs: their headers and file names read without trust,
grouped, matched against the library's masters, and the plan for what is missing."""
