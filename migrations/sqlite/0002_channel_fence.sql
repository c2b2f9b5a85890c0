-- The ownership fence of each channel: the membership epoch of the newest actor that loaded
-- it. Writers carry their epoch and are refused once a newer owner raised the fence.
ALTER TABLE channels ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
