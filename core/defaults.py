"""Named defaults of the domain: the value a scheme file may leave out, or a limit that several
modules share. Written once here, so a rule changes in one place."""

#: claims.review_working_days when a scheme file leaves it out: the reviewer answers within
#: 5 working days (SPEC "Claim"; the seeds: 5个工作日内…告知补助进程和补助结果)
REVIEW_WORKING_DAYS = 5

#: disclosure.objection_days when a scheme file leaves it out: no objection window (异议期)
OBJECTION_DAYS = 0

#: characters kept of a free-text reason stored with a money or status change (a bounced
#: transfer, a recovery, a deactivated card)
REASON_MAX = 200

#: claims.appeal_days when a scheme file leaves it out: a household may ask for a second look
#: (复核) at a rejection within 15 days of it
APPEAL_DAYS = 15
