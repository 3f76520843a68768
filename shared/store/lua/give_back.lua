-- Give back a slot a run holds, if it still holds it as the caller read it (shared/features/admission.py's
-- audit: its run no longer runs, and no job of it will give it back).
-- Keys and arguments: shared/store/scripts/pickup.py `GiveBack`. Returns 1 if it gave it back.
return give_back_slot(a.admission, a.wake_channel, a.tenant, a.run, a.held) and 1 or 0
