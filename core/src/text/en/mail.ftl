# Emails (core/src/mail: share.txt and share.html, and the account emails in mod.rs).

## The share email

mail-share-subject = { $sender } shared “{ $name }” with you
mail-share-subject-files = { $sender } shared { $count } files with you
mail-share-title = { $count ->
    [one] { $sender } shared a file with you
   *[other] { $sender } shared { $count } files with you
}
mail-share-intro = { $count ->
    [one] { $sender } shared a file with you through Coffer.
   *[other] { $sender } shared { $count } files with you through Coffer.
}
mail-share-file = { $count ->
    [one] File:     { $name } ({ $size })
   *[other] - { $name } ({ $size })
}
mail-share-expires = Expires:  { $expires }
mail-share-limit = Limit:    { mail-share-downloads }
mail-share-file-label = { $count ->
    [one] File
   *[other] Files
}
mail-share-expires-label = Expires
mail-share-limit-label = Limit
mail-share-downloads = { $count ->
    [one] { $count } download
   *[other] { $count } downloads
}
mail-share-message-from = Message from { $sender }:
mail-share-download-here = { $count ->
    [one] Download it here:
   *[other] Download them here, one by one or all at once:
}
mail-share-open = Open the download page
mail-share-copy-link = Or copy this link: { $url }
mail-share-password = The link is protected by a password. { $sender } will give it to you separately.
mail-share-verify = Before the download, the page asks you for a code that Coffer emails to this address, to make sure the file reaches you alone.
mail-share-for-you-alone = This link is for you alone: every download through it is recorded.

## The recipient's code

mail-recipient-code-subject = Your code to open a file shared through Coffer
mail-recipient-code =
    Your code to open “{ $name }”, which { $sender } shared with you:

        { $code }

    Type it on the download page, in the browser where you asked for it. It works once, until { $until }.
    If you did not ask for a code, you need do nothing: without it nobody can download the file with your link.

## Account emails

mail-account-exists-subject = Your Coffer account
mail-account-exists =
    Someone tried to create a Coffer account with this address, which already has one.

    If it was you: sign in at { $link } (your password is unchanged).
    If it was not you: nothing was changed, and you need do nothing.
mail-verify-subject = Confirm your email address for Coffer
mail-verify =
    Confirm that this address is yours, so that Coffer may email links to files in your name:

    { $link }

    The link works until { $until }. If you did not create a Coffer account, you need do nothing: without this step no email is sent in your name.
mail-reset-subject = Your Coffer password was reset
mail-reset =
    An administrator has reset the password of your Coffer account: the old one no longer works, and you have been signed out everywhere.

    Choose a new password here: { $link }

    The link works once, until { $until }. If you did not expect this, tell your administrator.
mail-reset-requested-subject = Reset your Coffer password
mail-reset-requested =
    Someone asked to reset the password of the Coffer account with this address. If it was you, choose a new password here:

    { $link }

    The link works once, until { $until }; choosing a new password signs you out everywhere. If it was not you, you need do nothing: your password is unchanged.
mail-invite-subject = Your invitation to Coffer
mail-invite =
    You are invited to create an account on Coffer, the file sharing service of your organisation.

    Create it here: { $link }

    The link works for this address only, once, until { $until }. If you did not expect it, you need do nothing.

## Download receipts (core/src/mail/receipts.rs)

mail-receipt-subject-one = { $recipient } downloaded “{ $name }”
mail-receipt-subject-many = { $count } downloads of files you shared
mail-receipt-digest-intro = Complete downloads of files you shared, since the last of these emails:
mail-receipt-someone = Someone with the link
mail-receipt-line = { $recipient } downloaded “{ $name }” to the end.
mail-receipt-when = When: { $when }
mail-receipt-from = From: { $address } ({ $agent })
mail-receipt-footer =
    You get this email because your shares ask for download receipts. Each share's access report in Coffer lists every view and download.
    Change how receipts come at { $link }.
