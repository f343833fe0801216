#!/usr/bin/env python3
"""Rebuild evals/stages_real_dev.jsonl and evals/stages_real_heldout.jsonl.

Real-language journey-stage evaluation sets, derived from public intent /
customer-service datasets by mapping each source INTENT (not each message) to
a journey stage. See evals/README.md, section "Real-language stage sets", for
the datasets, licences, attribution and the mapping rules in prose.

This is an offline maintenance script. It is NOT part of the app and must not
be imported by it. It only runs where the dataset snapshots are present as
bare git directories (they are not committed to this repository):

    $MIRROR_ROOT (default /work/.mirror)
      clinc+oos-eval/repo                                   commit 828f8093932c8fe6ca7936c3d2e52903b1c523de
          data/data_full.json                               CLINC150 (CC BY 3.0)
      hellohaptik+HINT3/repo                                commit 99965c892ea9a6801a87083d3861b0b04c91a4e7
          dataset/v2/{train,test}/*.csv                     HINT3 (ODbL 1.0 / DbCL 1.0)
      amazon-science+dstc11-track2-intent-induction/repo    commit 969b95a0d7365fbc6cd0e05989f1be6b44e6680c
          dstc11/{development,test-banking,test-finance}/test-utterances.jsonl
                                                            DSTC11 track 2 / NatCS (CDLA-Permissive 2.0)
      awslabs+multi-domain-goal-oriented-dialogues-dataset/repo(/.git)
                                                            commit baa30639c4b271f394b81443c842193407cdf26d
          data/paper_splits/splits_annotated_at_turn_level/<domain>/{train,dev,test}.tsv
                                                            MultiDoGO (CDLA-Permissive 1.0)
      sebischair+NLU-Evaluation-Corpora/repo                commit 9bac08b980f0f570c4166e2d7243c2971df50d8f
          WebApplicationsCorpus.json                        StackExchange web-apps corpus (CC BY-SA 3.0)

(The snapshots were brought in with the search tool's `fetch`, e.g.
`fetch github:clinc/oos-eval`; files are read with `git show <commit>:<path>`.)

Usage:
    python3 evals/build_real_stages.py            # write both files
    python3 evals/build_real_stages.py --check    # rebuild in memory, compare with the files on disk

Sampling is deterministic (fixed SEED, sorted inputs, no hash-order dependence).
"""

from __future__ import annotations

import argparse
import collections
import csv
import difflib
import io
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

SEED = 20240613
STAGES = ["awareness", "consideration", "decision", "onboarding", "adoption", "support", "renewal", "advocacy"]

MIRROR_ROOT = Path(os.environ.get("MIRROR_ROOT", "/work/.mirror"))
OUT_DIR = Path(__file__).resolve().parent
DEV_FILE = OUT_DIR / "stages_real_dev.jsonl"
HELDOUT_FILE = OUT_DIR / "stages_real_heldout.jsonl"

REPOS = {
    "clinc": ("clinc+oos-eval", "828f8093932c8fe6ca7936c3d2e52903b1c523de"),
    "hint3": ("hellohaptik+HINT3", "99965c892ea9a6801a87083d3861b0b04c91a4e7"),
    "dstc11": ("amazon-science+dstc11-track2-intent-induction", "969b95a0d7365fbc6cd0e05989f1be6b44e6680c"),
    "multidogo": ("awslabs+multi-domain-goal-oriented-dialogues-dataset", "baa30639c4b271f394b81443c842193407cdf26d"),
    "sebis": ("sebischair+NLU-Evaluation-Corpora", "9bac08b980f0f570c4166e2d7243c2971df50d8f"),
}

# --------------------------------------------------------------------------------------------
# Intent -> stage mapping. Key: dataset name as written in the "source" field ("<dataset>/<intent>").
# Intents not listed here are dropped (see DROPPED for the reasons).
# --------------------------------------------------------------------------------------------
MAPPING: dict[str, dict[str, str]] = {
    # CLINC150 (crowd-sourced paraphrases; banking, credit cards, travel, home, utility, meta domains)
    "clinc150": {
        # decision: apply for / book / order something new
        "new_card": "decision",
        "book_flight": "decision",
        "book_hotel": "decision",
        "car_rental": "decision",
        "order": "decision",
        # onboarding: waiting for something just applied for / ordered
        "application_status": "onboarding",
        "replacement_card_duration": "onboarding",
        "order_status": "onboarding",
        # adoption: established customer using a feature, nothing broken
        "transfer": "adoption",
        "balance": "adoption",
        "pin_change": "adoption",
        "pay_bill": "adoption",
        "bill_due": "adoption",
        "bill_balance": "adoption",
        "min_payment": "adoption",
        "routing": "adoption",
        "order_checks": "adoption",
        "transactions": "adoption",
        "expiration_date": "adoption",
        "credit_limit": "adoption",
        "credit_limit_change": "adoption",
        "redeem_rewards": "adoption",
        "rewards_balance": "adoption",
        "travel_notification": "adoption",
        "alarm": "adoption",
        # support: something broken or wrong
        "card_declined": "support",
        "report_lost_card": "support",
        "damaged_card": "support",
        "report_fraud": "support",
        "account_blocked": "support",
        "lost_luggage": "support",
    },
    # HINT3 SOFMattress: real messages to a mattress e-shop's website bot (India)
    "hint3-sofmattress": {
        "ABOUT_SOF_MATTRESS": "awareness",
        "COMPARISON": "consideration",
        "ERGO_FEATURES": "consideration",
        "ORTHO_FEATURES": "consideration",
        "PRODUCT_VARIANTS": "consideration",
        "SIZE_CUSTOMIZATION": "consideration",
        "WHAT_SIZE_TO_ORDER": "consideration",
        "WARRANTY": "consideration",
        "100_NIGHT_TRIAL_OFFER": "consideration",
        "CHECK_PINCODE": "consideration",
        "MATTRESS_COST": "decision",
        "EMI": "decision",
        "COD": "decision",
        "OFFERS": "decision",
        "ORDER_STATUS": "onboarding",
        "DELAY_IN_DELIVERY": "support",
        "CANCEL_ORDER": "renewal",
    },
    # HINT3 Curekart: real messages to a health/fitness-supplement e-shop's bot (India)
    "hint3-curekart": {
        "CHECK_PINCODE": "consideration",
        "INTERNATIONAL_SHIPPING": "consideration",
        "ORIGINAL_PRODUCT": "consideration",
        "MODES_OF_PAYMENTS": "decision",
        "ORDER_TAKING": "decision",
        "ORDER_STATUS": "onboarding",
        "DELAY_IN_PARCEL": "support",
        "REFUNDS_RETURNS_REPLACEMENTS": "support",
        "PORTAL_ISSUE": "support",
        "CANCEL_ORDER": "renewal",
        "REFER_EARN": "advocacy",
        "FRANCHISE": "advocacy",
    },
    # HINT3 Powerplay11: real messages to a fantasy-sports app's bot (India). Held-out only.
    "hint3-powerplay11": {
        "VERIFY_EMAIL": "onboarding",
        "VERIFY_MOBILE": "onboarding",
        "VERIFY_PAN": "onboarding",
        "WHY_VERIFY": "onboarding",
        "CHANGE_MOBILE_NUMBER": "adoption",
        "CHANGE_BANK_ACCOUNT": "adoption",
        "CHANGE_PROFILE_TEAM_DETAILS": "adoption",
        "DELETE_PAN_CARD": "adoption",
        "CHECK_WALLET_BALANCE": "adoption",
        "WITHDRAWAL_INTRO": "adoption",
        "JOIN_CONTEST": "adoption",
        "POINTS_NOT_UPDATED": "support",
        "WRONG_SCORES": "support",
        "DEDUCTED_AMOUNT_NOT_RECEIVED": "support",
        "LESS_WINNINGS_AMOUNT": "support",
        "PAN_VERIFICATION_FAILED": "support",
        "APPRECIATION": "advocacy",
    },
    # DSTC11 track 2 (NatCS): customer turns of human-human customer-service conversations
    "dstc11-insurance": {
        "GetQuote": "decision",
        "EnrollInPlan": "decision",
        "ChangeAddress": "adoption",
        "ChangeSecurityQuestion": "adoption",
        "UpdateBillingFrequency": "adoption",
        "UpdatePaymentPreference": "adoption",
        "GetPolicyNumber": "adoption",
        "RequestProofOfInsurance": "adoption",
        "CheckAccountBalance": "adoption",
        "CheckPaymentStatus": "adoption",
        "PayBill": "adoption",
        "RemoveDependent": "adoption",
        "ResetPassword": "support",
        "ReportBillingIssue": "support",
        "CancelPlan": "renewal",
    },
    "dstc11-finance": {
        "GetCreditCardInfo": "consideration",
        "GetLoanInfo": "consideration",
        "ApplyCreditCard": "decision",
        "ApplyLoan": "decision",
        "OpenAccount": "decision",
        "ChangePin": "adoption",
        "ChangeStatementDelivery": "adoption",
        "CheckAccountBalance": "adoption",
        "CheckCreditCardBalance": "adoption",
        "CheckLoanBalance": "adoption",
        "GetBankStatement": "adoption",
        "MakeCreditCardPayment": "adoption",
        "MakeTransfer": "adoption",
        "OrderCheck": "adoption",
        "PayLoan": "adoption",
        "SetAutoPayment": "adoption",
        "CancelCheck": "adoption",
        "UpdateEmail": "adoption",
        "UpdatePhoneNumber": "adoption",
        "UpdateStreetAddress": "adoption",
        "CloseAccount": "renewal",
    },
    "dstc11-banking": {
        "OpenBankingAccount": "decision",
        "CheckAccountBalance": "adoption",
        "CheckTransactionHistory": "adoption",
        "ExternalWireTransfer": "adoption",
        "InternalFundsTransfer": "adoption",
        "GetWithdrawalLimit": "adoption",
        "AskAboutTransferTime": "adoption",
        "UpdateEmail": "adoption",
        "UpdatePhoneNumber": "adoption",
        "UpdateStreetAddress": "adoption",
        "DisputeCharge": "support",
        "ReportLostStolenCard": "support",
        "CloseBankAccount": "renewal",
    },
    # MultiDoGO: customer turns of crowd-sourced human-human chats (lower-cased, no punctuation). Held-out only.
    "multidogo-media": {  # cable / internet / phone provider
        "startserviceintent": "decision",
        "viewbillsintent": "adoption",
        "cancelserviceintent": "renewal",
    },
    "multidogo-software": {
        "startorder": "decision",
        "softwareupdate": "adoption",
        "reportbrokensoftware": "support",
    },
    "multidogo-airline": {
        "bookflight": "decision",
        "changeseatassignment": "adoption",
    },
    "multidogo-insurance": {
        "getproofofinsurance": "adoption",
        "reportbrokenphone": "support",
    },
    "multidogo-finance": {
        "checkoffereligibility": "consideration",
        "checkbalance": "adoption",
        "transfermoney": "adoption",
        "updateaddress": "adoption",
        "getroutingnumber": "adoption",
        "orderchecks": "adoption",
        "reportlostcard": "support",
        "disputecharge": "support",
        "closeaccount": "renewal",
    },
    # StackExchange webapps question titles (Braun et al. 2017). Held-out only.
    "stackexchange-webapps": {
        "Delete Account": "renewal",
        "Export Data": "adoption",
        "Filter Spam": "adoption",
    },
}

# Intents that were looked at and dropped, with the reason (documentation; not used by the code).
DROPPED: list[tuple[str, str]] = [
    (
        "clinc150 small_talk, oos, kitchen_and_dining, auto_and_commute, work domains",
        "chit-chat, out-of-scope, or not a customer-to-company request (recipes, traffic, PTO, payroll)",
    ),
    (
        "clinc150 travel: flight_status, carry_on, international_visa, vaccines, plug_type, translate, timezone, "
        "exchange_rate, travel_suggestion, travel_alert",
        "general information, no journey stage",
    ),
    ("clinc150 interest_rate, apr, international_fees", "consideration (prospect) or adoption (cardholder): ambiguous"),
    ("clinc150 freeze_account", "mixes routine 'block my account' with fraud panic (adoption vs support)"),
    (
        "clinc150 improve_credit_score, credit_score, spending_history",
        "personal-finance advice / reports rather than a product journey step",
    ),
    (
        "clinc150 home/meta/utility other intents (music, lists, calendar, timer, smart_home, sync_device, "
        "reset_settings, change_language, cancel, yes/no ...)",
        "assistant commands or dialogue acts with no customer stage",
    ),
    ("hint3-sofmattress DISTRIBUTORS", "mixes store locator (consideration) and dealership requests (partner)"),
    ("hint3-sofmattress LEAD_GEN", "mostly 'call me back' requests with no stage, mixed with 'I want to buy'"),
    ("hint3-sofmattress RETURN_EXCHANGE, PILLOWS", "mix pre-purchase policy questions with post-purchase returns"),
    (
        "hint3-curekart CALL_CENTER, CHAT_WITH_AGENT, START_OVER, WORK_FROM_HOME, STORE_INFORMATION",
        "contact / navigation / opening-hours requests with no stage",
    ),
    (
        "hint3-curekart RECOMMEND_PRODUCT, CONSULT_START, IMMUNITY, SIDE_EFFECT, USER_GOAL_FORM",
        "health advice / product search, too noisy to map",
    ),
    (
        "hint3-curekart EXPIRY_DATE, PAYMENT_AND_BILL, MODIFY_ADDRESS, ORDER_QUERY, RESUME_DELIVERY, SIGN_UP",
        "mix pre- and post-purchase (or problem and routine) messages",
    ),
    ("hint3-powerplay11 OFFERS_AND_REFERRALS", "mixes promotions (decision) and referral (advocacy)"),
    (
        "hint3-powerplay11 ACCOUNT_NOT_VERIFIED, NO_EMAIL_CONFIRMATION, WITHDRAWAL_TIME, WINNINGS, WITHDRAWAL_STATUS, "
        "CHECK_DEPOSIT_STATUS, ACCOUNT_BALANCE_DEDUCTED, CANNOT_SEE_JOINED_CONTESTS, MATCH_ABANDONED, REFUND_OF_*",
        "mix routine questions with something-went-wrong reports",
    ),
    (
        "hint3-powerplay11 rules questions (TEAM_DEADLINE, NEW_TEAM_PATTERN, HOW_POINTS_CALCULATED, "
        "WHAT_IF_THERES_A_TIE, TYPES_*, TAXES_ON_WINNINGS, FAIRPLAY_VIOLATIONS, HOW_TO_PLAY, CASH_BONUS*, "
        "SIGNUP_BONUS, UNUTILIZED_MONEY, ...)",
        "game-rules questions that a prospect or a user could ask",
    ),
    (
        "hint3-powerplay11 CRITICISM, FAKE_TEAMS, FEEDBACK, CAPABILITIES, CONTACT_NUMBER, CHAT_WITH_AN_AGENT, "
        "GREETINGS_DAY, PRESENCE, THANKS",
        "insults, accusations, contact requests, chit-chat",
    ),
    ("all HINT3 NO_NODES_DETECTED", "out of scope by construction"),
    (
        "dstc11-insurance FileClaim, ReportAutomobileAccident",
        "filing a claim is the core use of insurance, not a product fault: adoption or support is a coin toss",
    ),
    ("dstc11-insurance ChangePlan", "upgrade (decision) or downgrade (renewal) cannot be told apart"),
    (
        "dstc11-insurance CreateAccount, AddDependent; dstc11-finance AddUserToAccount",
        "first set-up (onboarding) or later change (adoption) cannot be told apart",
    ),
    (
        "dstc11-insurance CancelAutomaticBilling",
        "a billing-settings change that reads like cancelling; also has mislabelled turns",
    ),
    (
        "dstc11-insurance FindAgent; dstc11-banking FindATM, FindBranch, GetBranchHours, AskAboutCashDeposits; "
        "dstc11-finance FindBranch, GetBranchHours, ScheduleAppointment",
        "locations / opening hours / appointments: any stage",
    ),
    (
        "dstc11-finance RequestNewCard, OnlineBankingInfo; dstc11-banking SetUpOnlineBanking",
        "mix replacement after damage (support), first set-up and routine use",
    ),
    (
        "dstc11-finance AskConsumerPriceIndex, AskLiquidityRatio, GetDebtIncomeRatio, NetIncome, GetStockQuote, "
        "GetTreasuryBondYield, GetExchangeRate, GetInvestmentReport, GetCreditReport, PurchaseStocks",
        "market / personal-finance information, no customer journey step",
    ),
    ("multidogo-fastfood (all)", "item lists ('2 mcdouble'), ordering food is not a website journey message"),
    (
        "multidogo-media getinformationintent, getchannelpackageintent, upgradeserviceintent, "
        "transferserviceintent, updateaccountinfo, viewdatausageintent",
        "mix plan/price questions with noise, or fewer than 15 usable turns",
    ),
    (
        "multidogo-software expensereport, providereceipt, checkserverstatus, changeorder, stoporder, getpromotions",
        "employee IT/expense helpdesk, or too few and noisy turns",
    ),
    ("multidogo-airline getboardingpass, getseatinfo", "post-booking pre-flight: onboarding vs adoption unclear"),
    (
        "multidogo-insurance checkclaimstatus; multidogo-finance replacecard, openaccount",
        "claim follow-up is ambiguous; replacecard mixes expiry and damage; openaccount has 4 turns",
    ),
    (
        "multidogo contentonly, confirmation, rejection, greetings, thankyou, outofdomain",
        "dialogue acts, no intent",
    ),
    (
        "stackexchange-webapps Change Password, Sync Accounts, Find Alternative, Download Video, None",
        "mix problems with routine use, or addressed to a community rather than a vendor",
    ),
    ("stackexchange AskUbuntu corpus, Chatbot (Munich transport) corpus", "not company-customer messages"),
]

# Per-intent exclusions (regex, case-insensitive): messages inside a kept intent that belong to another stage
# (label noise of the source, or the intent straddling two stages). Written as rules, applied before sampling.
INTENT_EXCLUDE: dict[tuple[str, str], str] = {
    ("clinc150", "replacement_card_duration"): r"weather",
    ("hint3-sofmattress", "ABOUT_SOF_MATTRESS"): r"different|planning to purchase|queries",
    ("hint3-sofmattress", "100_NIGHT_TRIAL_OFFER"): r"check offers|exchange",
    ("hint3-sofmattress", "ORDER_STATUS"): r"\blate\b",
    ("hint3-sofmattress", "COD"): r"showing",
    ("hint3-sofmattress", "ERGO_FEATURES"): r"want to buy",
    ("hint3-sofmattress", "PRODUCT_VARIANTS"): r"^i (want|need) (to buy )?an? mattress",
    ("hint3-sofmattress", "DELAY_IN_DELIVERY"): r"has it been shipped|how many days we can get",
    (
        "hint3-curekart",
        "ORIGINAL_PRODUCT",
    ): r"\b(got|received|receive|seems|is fake|my (order|product|supplement))\b|what if|take it back|natural",
    ("hint3-curekart", "REFUNDS_RETURNS_REPLACEMENTS"): r"polic|meal replacement|by mistake|cancel|15 days",
    ("hint3-curekart", "REFER_EARN"): r"refer me|i have referral|reedem",
    (
        "hint3-curekart",
        "ORDER_STATUS",
    ): r"where do you live|previous orders|containment|can not be delivered|not delivered yet|has not reached",
    (
        "hint3-curekart",
        "ORDER_TAKING",
    ): r"not (available|showing|allowing)|no option|\bno cod\b|my cod order|prepaid percel",
    (
        "hint3-curekart",
        "CHECK_PINCODE",
    ): r"cannot be delivered|can't be delivered|not deliver|not available|how (many|much) (days|time)",
    ("hint3-curekart", "DELAY_IN_PARCEL"): r"pandemic|covid|how much time taken",
    ("hint3-powerplay11", "VERIFY_PAN"): r"\b(not|no|fail|failed|problem|unable)\b|verifi no|how much time",
    ("hint3-powerplay11", "VERIFY_EMAIL"): r"\b(not|no|fail|failed|problem|unable)\b",
    ("hint3-powerplay11", "CHANGE_MOBILE_NUMBER"): r"dead|out of service|can't get into",
    ("hint3-powerplay11", "POINTS_NOT_UPDATED"): r"match name|player name|^when",
    ("hint3-powerplay11", "WRONG_SCORES"): r"^what if",
    ("dstc11-insurance", "ResetPassword"): r"worried|cyber|\bchange (my |the )?password\b",
    ("dstc11-finance", "GetCreditCardInfo"): r"\b(fees?|rates?|cost|price|apr)\b",
    ("dstc11-finance", "GetLoanInfo"): r"\b(fees?|rates?|cost|price|apr)\b",
    ("multidogo-airline", "bookflight"): r"already|change|booked|did you|departure city|upcoming|check",
    ("clinc150", "pin_change"): r"forg|recall|no idea|don't remember",
    ("dstc11-finance", "ChangePin"): r"forg|recall|no idea|don't remember",
    ("multidogo-media", "viewbillsintent"): r"too high",
    ("multidogo-finance", "disputecharge"): r"new card",
    ("multidogo-finance", "checkoffereligibility"): r"procedure|any offer",
    ("multidogo-insurance", "getproofofinsurance"): r"damage|claim",
    ("multidogo-media", "startserviceintent"): r"\bgot\b",
    ("multidogo-software", "startorder"): r"status|server|recurring|reorder",
}

# Individual messages removed after reading the sampled output: wrong intent label in the source,
# meaningless without the preceding conversation turn, or a personal name. Matched on exact text.
EXCLUDE_MESSAGES: set[str] = {
    # meaningless without the bot question they answered, or too vague to label on their own
    "Ordered on 18 march",
    "Almost 1 month over",
    "Order over 1 month",
    "25 days are completed",
    "26 days are completed",
    "26 days are completed.",
    "It's already one month",
    "We order last month 20 mar",
    "Why so long?",
    "Why so many days",
    "I ordered SOF mattress on 27 Feb....",
    "Hi I placed an order by last 12 march",
    "It's been a month",
    "It's been so many days",
    "It has been over 5 weeks now",
    "Order related",
    "Present status",
    "Need status",
    "When can we expect",
    "My order Number",
    "Order #14254",
    "Order #",
    "I have orderd a mattress",
    "What is the status?",
    "i have back pain",
    "I have back pain issue",
    "for back pain",
    "Cancel payment",
    "Fake product",
    "Delivered when",
    "Appreciate it",
    "Hi, is your service operating during curfew",
    "Transfer funds to other accounts.",
    "order returned",
    "please provide the status",
    "Information for return",
    "Get Product Service",
    "Twitter and Echofon spam",
    "i need a help for an insurance details",
    "It’s shows that u returned multiple order",
    "Refund & Replacement",
    "ordered wrong item",
    # labelled with an intent of another stage in the source
    "cost of plan",  # multidogo-media viewbillsintent: a price question
    "how mouch it cost",  # multidogo-media viewbillsintent: a price question
    "could you please help me to activate an internet services in your firm",  # buy or activate?
    "thank you and i need to know about new company interest rate list could you advice",  # a rate list: decision
    # the agent's words:
    "please tell any inquire if the companys new lower rates you saw in a commercial are available to you",
    "Deleting an account(website) from Google Analytics?",  # removes a tracked site, not the user's account
    "i can't make a prepaid payment",  # a payment problem (support), not payment methods
    "what's the phone number for my credit card company",  # clinc150 replacement_card_duration label noise
    # personal names or home details that the PII patterns miss
    "hi close Dillon Hardy's account",
    "I want a new credit card on my business account. I'm chris",
    "Hi, I'm marie. i'd like to apply for a credit card for my business",
    "im bill i need a loan",
    "Hi I'm Jon I need to set up automatic credit card patments",
    "i would like to open up a new credit card for my employee Mark. I need it to be connected to the exiting card",
    "hi i am george arwell, i want to ope a check account for InstaNet, i am the sole owner of the company",
    "Hi! I'm Kenny sebastian. I want to schedule a credit card payment",
    "Hi is Tom in this side I need to check my payment status.",
    "Hi I'm brian gil. I want to app,y for loan in Illinois. My business is a oleander's restaurant and I want to buy "
    "property.",
    "hey sami want new internet connection",
    "Hey! I'm kate. I want loan for my business 'Luxury Boulevard'.",
    "Hello! I've been wanting to get a quote for my renters insurance, and I live in Market Park apartment",
}

# Datasets used by both files: all source splits are pooled, and each (dataset, intent) pool is cut at
# random (fixed seed) into DEV_FRACTION for the dev file and the rest for the held-out file, so the two
# files never share a message. Held-out-only datasets/domains never appear in the dev file.
SHARED_SOURCES = [
    "clinc150:train+test",
    "hint3-sofmattress:all",
    "hint3-curekart:all",
    "dstc11-insurance:all",
    "dstc11-finance:all",
    "dstc11-banking:all",
]
HELDOUT_ONLY_SOURCES = [
    "hint3-powerplay11:all",
    "multidogo-media:all",
    "multidogo-software:all",
    "multidogo-airline:all",
    "multidogo-insurance:all",
    "multidogo-finance:all",
    "stackexchange-webapps:all",
]
DEV_FRACTION = 0.6

# Cases per stage (None = everything that survives the filters; awareness and advocacy are rare in real data).
DEV_QUOTA = {
    "awareness": None,
    "consideration": 68,
    "decision": 68,
    "onboarding": 60,
    "adoption": 68,
    "support": 68,
    "renewal": 56,
    "advocacy": None,
}
HELDOUT_QUOTA = {
    "awareness": None,
    "consideration": 38,
    "decision": 38,
    "onboarding": 36,
    "adoption": 42,
    "support": 42,
    "renewal": 36,
    "advocacy": None,
}

# At most this many cases from one source intent per file (keeps near-paraphrase intents from dominating a stage).
MAX_PER_INTENT = {"dev": 12, "heldout": 6}

MIN_WORDS, MAX_WORDS = 2, 60
NEAR_DUP_RATIO = 0.88
NEAR_DUP_JACCARD = 0.75


# --------------------------------------------------------------------------------------------
# Reading the snapshots
# --------------------------------------------------------------------------------------------
def _git_dir(name: str) -> Path:
    base = MIRROR_ROOT / name / "repo"
    for cand in (base, base / ".git"):
        if (cand / "HEAD").exists() and (cand / "objects").exists():
            return cand
    raise SystemExit(f"snapshot not found: {base} (fetch it first; see the docstring)")


def git_show(key: str, path: str) -> str:
    name, commit = REPOS[key]
    gd = _git_dir(name)
    res = subprocess.run(["git", "--git-dir", str(gd), "show", f"{commit}:{path}"], capture_output=True)
    if res.returncode != 0:
        raise SystemExit(f"cannot read {path} at {commit} from {gd}: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout.decode("utf-8")


def load_clinc(split: str):
    data = json.loads(git_show("clinc", "data/data_full.json"))
    for text, intent in data[split]:
        yield "clinc150", intent, text


def load_hint3(bot: str, split: str):
    path = f"dataset/v2/{split}/{bot}_{split}.csv"
    reader = csv.reader(io.StringIO(git_show("hint3", path)))
    next(reader)  # header: sentence,label
    for row in reader:
        if len(row) >= 2:
            yield f"hint3-{bot}", row[1].strip(), row[0]


def load_dstc11(domain: str):
    folder = {"insurance": "development", "banking": "test-banking", "finance": "test-finance"}[domain]
    for line in git_show("dstc11", f"dstc11/{folder}/test-utterances.jsonl").splitlines():
        if line.strip():
            rec = json.loads(line)
            yield f"dstc11-{domain}", rec["intent"], rec["utterance"]


def load_multidogo(domain: str):
    """First customer turn carrying each intent in each conversation (the opening request; later turns
    with the same label are mostly short follow-ups such as 'ok' or '1')."""
    dialogue_acts = {
        "contentonly",
        "confirmation",
        "openinggreeting",
        "rejection",
        "thankyou",
        "closinggreeting",
        "outofdomain",
        "",
    }
    convs: dict[str, list[tuple[float, str, str]]] = collections.defaultdict(list)
    for split in ("train", "dev", "test"):
        text = git_show("multidogo", f"data/paper_splits/splits_annotated_at_turn_level/{domain}/{split}.tsv")
        for line in text.split("\n")[1:]:
            parts = line.split("\t")
            if len(parts) != 6:
                continue  # rows broken by stray quotes in the source
            conv, turn, _uid, utt, _slots, intent = parts
            try:
                convs[conv].append((float(turn), utt, intent.strip()))
            except ValueError:
                continue
    for conv in sorted(convs):
        seen = set()
        for _turn, utt, intent in sorted(convs[conv]):
            if intent in dialogue_acts or "<div>" in intent or intent in seen:
                continue
            seen.add(intent)
            yield f"multidogo-{domain}", intent, utt


def load_webapps():
    data = json.loads(git_show("sebis", "WebApplicationsCorpus.json"))
    for s in data["sentences"]:
        yield "stackexchange-webapps", s["intent"], s["text"]


def load_source(spec: str):
    dataset, split = spec.split(":")
    if dataset == "clinc150":
        return [r for sp in split.split("+") for r in load_clinc(sp)]
    if dataset.startswith("hint3-"):
        bot = dataset.split("-", 1)[1]
        splits = ["train", "test"] if split == "all" else [split]
        return [r for s in splits for r in load_hint3(bot, s)]
    if dataset.startswith("dstc11-"):
        return list(load_dstc11(dataset.split("-", 1)[1]))
    if dataset.startswith("multidogo-"):
        return list(load_multidogo(dataset.split("-", 1)[1]))
    if dataset == "stackexchange-webapps":
        return list(load_webapps())
    raise ValueError(spec)


# --------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------
_NAME = r"[A-Z][a-zA-Z]*(?:['’][A-Za-z]+)?"
_NUMWORD = (
    r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)"
    r"(?:-(?:one|two|three|four|five|six|seven|eight|nine))?"
)
PII_PATTERNS = [
    re.compile(r"\S+@\S+\.\w+"),  # e-mail address
    re.compile(r"https?://|www\.", re.I),  # URL
    re.compile(r"\d[\d\s-]{5,}\d"),  # 7+ digit runs (phone, account, card numbers)
    re.compile(r"\b(?:account|acct|ac|card|pin|policy|number|no|ending|routing|ssn)\b\D{0,12}\d{4,}", re.I),
    re.compile(r"\d{4,}\D{0,12}\b(?:pin|passcode|password)\b", re.I),
    re.compile(rf"\b{_NUMWORD}(?:[\s,-]+{_NUMWORD}){{3,}}\b", re.I),  # spelled-out digit strings (account numbers)
    re.compile(
        r"\b(?:my name|name is|name's|name on|last name|first name|surname|social security|date of birth|birthday|"
        r"born on)\b",
        re.I,
    ),
    re.compile(
        rf"\b(?i:i am|i'm|im|this is|it's|its)\s+{_NAME}(?:\s+{_NAME})?\s*"
        r"(?:[,.!]|(?i:and|here|by|calling|in this side)\b|$)"
    ),
    re.compile(
        r"\b\d+\s+\w+(?:\s+\w+)?\s+(?:st|street|ave|avenue|road|rd|drive|dr|lane|ln|blvd|boulevard|court|way|"
        r"center|centre|place|plaza|apartment|apt|suite)\b",
        re.I,
    ),  # street address
    re.compile(r"\b(?:zip|zipcode|zip code|postcode|postal code)\b\D{0,12}\d{4,}", re.I),
]
# Spoken-style transcripts (DSTC11) often carry a caller's full name: two consecutive capitalised words
# anywhere in the message are treated as a possible name there (costs a few false drops such as "New York").
FULL_NAME = re.compile(r"\b[A-Z][a-z]+\s+[A-Z][a-z]+(?:['’]s)?\b")
FULL_NAME_DATASETS = ("dstc11-",)
PLACEHOLDER = re.compile(r"\{\{|\}\}|<[a-z_ ]+>|\[[a-z_ ]+\]", re.I)


def has_pii(text: str) -> bool:
    return any(p.search(text) for p in PII_PATTERNS)


def usable(text: str) -> bool:
    if "\n" in text or "\r" in text:
        return False  # multi-line entries are mostly pasted bot text
    words = text.split()
    if not (MIN_WORDS <= len(words) <= MAX_WORDS):
        return False
    if not re.search(r"[A-Za-z]{3,}", text):
        return False
    if PLACEHOLDER.search(text) or has_pii(text):
        return False
    return True


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def near_dup(a: str, b: str) -> bool:
    """a, b: normalised texts. Near-duplicate = same word set up to NEAR_DUP_JACCARD, or character
    similarity of at least NEAR_DUP_RATIO."""
    if a == b:
        return True
    wa, wb = set(a.split()), set(b.split())
    if wa and wb and len(wa & wb) / len(wa | wb) >= NEAR_DUP_JACCARD:
        return True
    sm = difflib.SequenceMatcher(None, a, b)
    return (
        sm.real_quick_ratio() >= NEAR_DUP_RATIO and sm.quick_ratio() >= NEAR_DUP_RATIO and sm.ratio() >= NEAR_DUP_RATIO
    )


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def candidate_pools(specs: list[str]):
    """stage -> dataset -> intent -> [texts], filtered, in source order with exact duplicates removed."""
    pools: dict[str, dict[str, dict[str, list[str]]]] = {s: {} for s in STAGES}
    for spec in specs:
        seen_norm: set[str] = set()
        for dataset, intent, raw in load_source(spec):
            stage = MAPPING.get(dataset, {}).get(intent)
            if stage is None:
                continue
            text = raw.strip()
            if not usable(text) or text in EXCLUDE_MESSAGES:
                continue
            if dataset.startswith(FULL_NAME_DATASETS) and FULL_NAME.search(text):
                continue
            rx = INTENT_EXCLUDE.get((dataset, intent))
            if rx and re.search(rx, text, re.I):
                continue
            key = norm(text)
            if key in seen_norm:
                continue
            seen_norm.add(key)
            pools[stage].setdefault(dataset, {}).setdefault(intent, []).append(text)
    return pools


def split_pools(pools):
    """Cut every (dataset, intent) pool into a dev part and a held-out part (seeded per pool)."""
    dev = {s: {} for s in STAGES}
    held = {s: {} for s in STAGES}
    for stage in STAGES:
        for ds, intents in pools[stage].items():
            for it, msgs in intents.items():
                msgs = sorted(msgs)
                _rng("split", ds, it).shuffle(msgs)
                k = round(len(msgs) * DEV_FRACTION)
                dev[stage].setdefault(ds, {})[it] = msgs[:k]
                held[stage].setdefault(ds, {})[it] = msgs[k:]
    return dev, held


def merge_pools(a, b):
    out = {s: {} for s in STAGES}
    for pools in (a, b):
        for stage in STAGES:
            for ds, intents in pools[stage].items():
                for it, msgs in intents.items():
                    if msgs:
                        out[stage].setdefault(ds, {}).setdefault(it, []).extend(msgs)
    return out


def _rng(*parts) -> random.Random:
    """A separate seeded generator per pool, so that changing one pool never reshuffles the others."""
    return random.Random(":".join(str(p) for p in (SEED, *parts)))


def sample(pools, quota, split: str, taken: list[str]):
    """Per stage, round-robin over datasets, then over intents within a dataset, so that no single dataset
    or intent dominates a stage. `taken` holds normalised texts already used (dev first, then held-out);
    near-duplicates of any of them are skipped."""
    out = []
    for stage in STAGES:
        by_ds = pools[stage]
        datasets = sorted(by_ds)
        _rng(split, stage).shuffle(datasets)
        queues = {}
        for ds in datasets:
            intents = sorted(by_ds[ds])
            _rng(split, stage, ds).shuffle(intents)
            q = {}
            for it in intents:
                msgs = sorted(by_ds[ds][it])
                _rng(split, stage, ds, it).shuffle(msgs)
                q[it] = msgs[::-1]  # popped from the end
            queues[ds] = (intents, q)
        limit = quota[stage]
        n = 0
        cursor = {ds: 0 for ds in datasets}
        per_intent: collections.Counter = collections.Counter()
        active = list(datasets)
        while active and (limit is None or n < limit):
            for ds in list(active):
                if limit is not None and n >= limit:
                    break
                intents, q = queues[ds]
                picked = None
                # next intent of this dataset that still has a usable message
                for _ in range(len(intents)):
                    it = intents[cursor[ds] % len(intents)]
                    cursor[ds] += 1
                    if per_intent[(ds, it)] >= MAX_PER_INTENT[split]:
                        continue
                    while q[it]:
                        text = q[it].pop()
                        key = norm(text)
                        if any(near_dup(key, t) for t in taken):
                            continue
                        picked = (it, text, key)
                        break
                    if picked:
                        break
                if not picked:
                    active.remove(ds)
                    continue
                it, text, key = picked
                taken.append(key)
                per_intent[(ds, it)] += 1
                out.append({"messages": [{"role": "user", "content": text}], "stage": stage, "source": f"{ds}/{it}"})
                n += 1
    return out


def build():
    taken: list[str] = []
    shared_dev, shared_held = split_pools(candidate_pools(SHARED_SOURCES))
    dev = sample(shared_dev, DEV_QUOTA, "dev", taken)
    heldout = sample(merge_pools(shared_held, candidate_pools(HELDOUT_ONLY_SOURCES)), HELDOUT_QUOTA, "heldout", taken)
    # output order: shuffled, but by a key that depends only on each case, not on the other cases
    dev.sort(key=lambda r: _rng("order", r["source"], r["messages"][0]["content"]).random())
    heldout.sort(key=lambda r: _rng("order", r["source"], r["messages"][0]["content"]).random())
    return dev, heldout


def dumps(rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def summary(name, rows):
    c = collections.Counter(r["stage"] for r in rows)
    ds = collections.Counter(r["source"].split("/")[0] for r in rows)
    _say(f"{name}: {len(rows)} cases")
    _say("  " + ", ".join(f"{s} {c.get(s, 0)}" for s in STAGES))
    _say("  " + ", ".join(f"{d} {n}" for d, n in sorted(ds.items())))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="rebuild in memory and compare with the files on disk")
    args = ap.parse_args(argv)
    dev, heldout = build()
    if not args.check:
        DEV_FILE.write_text(dumps(dev), encoding="utf-8")
        HELDOUT_FILE.write_text(dumps(heldout), encoding="utf-8")
    summary(DEV_FILE.name, dev)
    summary(HELDOUT_FILE.name, heldout)
    if args.check:
        ok = all(
            p.exists() and p.read_text(encoding="utf-8") == dumps(rows)
            for p, rows in ((DEV_FILE, dev), (HELDOUT_FILE, heldout))
        )
        _say("up to date" if ok else "DIFFERS from the files on disk")
        return 0 if ok else 1
    _say(f"wrote {DEV_FILE} and {HELDOUT_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
