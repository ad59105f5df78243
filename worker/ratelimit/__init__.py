"""Rate limits where a worker meets them, in the order a call does: `admission` books each
call's slot before it goes, the sender's gate checks pauses right before sending,
`learning` turns an upstream's "slow down" into a pause for every worker, and `handback`
returns calls whose slot is far off to the queue without holding anything."""
