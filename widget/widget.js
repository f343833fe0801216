/*! Journey Guide widget | Apache-2.0 | https://github.com/journey-guide */
/* One file, no framework. Everything lives in a shadow root; no text from visitors, documents or the
   LLM is ever parsed as HTML: the Markdown renderer builds DOM nodes and sets textContent. */
(() => {
  "use strict";
  const w = window;
  const d = document;
  const LOADED = Symbol.for("journey-guide"); // marks the API of a copy already running (no other global)
  const given = w.JourneyGuide;
  if ((given && given[LOADED]) || d.querySelector("journey-guide")) return;
  // a config object, not the API of a copy already loaded (whose `open` is a function): `open: true` is config
  const cfg = given && typeof given === "object" && typeof given.open !== "function" ? given : {};
  const str = (v) => (typeof v === "string" && v ? v : ""); // text settings of another type are ignored
  const script = d.currentScript || d.querySelector('script[src*="widget.js"]');
  const base = (str(cfg.apiUrl) || (script && script.src.replace(/widget\.js([?#].*)?$/, "")) || "/").replace(
    /\/?$/,
    "/"
  );

  const T = {
      title: "Ask us anything",
      subtitle: "Answers from our help centre",
      greeting: "Hi! I can answer questions about our product, plans and getting set up.",
      starters: "Tap any question to see how we'd answer",
      open: "Open chat",
      close: "Close chat",
      unread: "unread",
      placeholder: "Type your question…",
      input: "Your message",
      send: "Send",
      you: "You:",
      bot: "Guide:",
      sources: "Sources",
      up: "Helpful",
      down: "Not helpful",
      thanks: "Thanks for the feedback!",
      suggested: "Suggested questions",
      failed: "Not sent.",
      retry: "Retry",
      busy: "Writing a reply…",
      human: "Talk to a person",
      email: "Your email",
      emailHelp: "If no one is free right now, we'll reply to this address.",
      known: "We'll reply to {email}.",
      message: "What do you need help with?",
      optional: "(optional)",
      submit: "Ask for a person",
      sendEmail: "Send",
      cancel: "Cancel",
      badEmail: "Please enter a valid email address.",
      needMessage: "Please tell us what you need help with.",
      offline: "We couldn't reach the server. Please try again.",
      waiting: "Waiting for someone from our team…",
      joined: "{name} joined",
      chatting: "You're chatting with {name}",
      typing: "{name} is typing…",
      returned: "{name} handed you back to the guide.",
      closed: "{name} closed the conversation.",
      sent: "Thanks! We'll reply to {email}.",
      fresh: "New conversation",
      copy: "Copy reply",
      copied: "Copied",
      dismiss: "Dismiss",
  };
  // The widget's own words in other languages: the values of T, in its order, joined by "|".
  const LOCALES = {
    es: "Pregúntanos lo que quieras|Respuestas de nuestro centro de ayuda|¡Hola! Puedo responder preguntas sobre nuestro producto, planes y puesta en marcha.|Toca una pregunta para ver cómo respondemos|Abrir chat|Cerrar chat|sin leer|Escribe tu pregunta…|Tu mensaje|Enviar|Tú:|Guía:|Fuentes|Útil|No útil|¡Gracias por tu opinión!|Preguntas sugeridas|No enviado.|Reintentar|Escribiendo una respuesta…|Hablar con una persona|Tu correo electrónico|Si ahora no hay nadie disponible, te responderemos a esta dirección.|Te responderemos a {email}.|¿En qué necesitas ayuda?|(opcional)|Pedir una persona|Enviar|Cancelar|Introduce una dirección de correo válida.|Cuéntanos en qué necesitas ayuda.|No pudimos conectar con el servidor. Inténtalo de nuevo.|Esperando a alguien de nuestro equipo…|{name} se ha unido|Estás hablando con {name}|{name} está escribiendo…|{name} te ha devuelto a la guía.|{name} ha cerrado la conversación.|¡Gracias! Te responderemos a {email}.|Nueva conversación|Copiar respuesta|Copiado|Descartar",
    de: "Fragen Sie uns alles|Antworten aus unserem Hilfe-Center|Hallo! Ich beantworte Fragen zu unserem Produkt, unseren Tarifen und zur Einrichtung.|Tippen Sie auf eine Frage, um unsere Antwort zu sehen|Chat öffnen|Chat schließen|ungelesen|Ihre Frage…|Ihre Nachricht|Senden|Sie:|Assistent:|Quellen|Hilfreich|Nicht hilfreich|Danke für Ihr Feedback!|Vorgeschlagene Fragen|Nicht gesendet.|Erneut versuchen|Antwort wird geschrieben…|Mit einem Menschen sprechen|Ihre E-Mail-Adresse|Wenn gerade niemand frei ist, antworten wir an diese Adresse.|Wir antworten an {email}.|Wobei brauchen Sie Hilfe?|(optional)|Einen Menschen anfragen|Senden|Abbrechen|Bitte geben Sie eine gültige E-Mail-Adresse ein.|Bitte sagen Sie uns, wobei Sie Hilfe brauchen.|Der Server ist nicht erreichbar. Bitte versuchen Sie es erneut.|Warten auf jemanden aus unserem Team…|{name} ist beigetreten|Sie chatten mit {name}|{name} schreibt…|{name} hat Sie an den Assistenten zurückgegeben.|{name} hat das Gespräch beendet.|Danke! Wir antworten an {email}.|Neues Gespräch|Antwort kopieren|Kopiert|Ausblenden",
    fr: "Posez-nous vos questions|Réponses de notre centre d'aide|Bonjour ! Je réponds à vos questions sur notre produit, nos offres et la mise en route.|Touchez une question pour voir notre réponse|Ouvrir le chat|Fermer le chat|non lus|Votre question…|Votre message|Envoyer|Vous :|Guide :|Sources|Utile|Pas utile|Merci pour votre avis !|Questions suggérées|Non envoyé.|Réessayer|Rédaction d'une réponse…|Parler à une personne|Votre e-mail|Si personne n'est disponible, nous répondrons à cette adresse.|Nous répondrons à {email}.|De quoi avez-vous besoin ?|(facultatif)|Demander une personne|Envoyer|Annuler|Saisissez une adresse e-mail valide.|Dites-nous de quoi vous avez besoin.|Impossible de joindre le serveur. Veuillez réessayer.|En attente d'un membre de notre équipe…|{name} a rejoint la conversation|Vous discutez avec {name}|{name} écrit…|{name} vous a redirigé vers le guide.|{name} a clos la conversation.|Merci ! Nous répondrons à {email}.|Nouvelle conversation|Copier la réponse|Copié|Ignorer",
    pt: "Pergunte o que quiser|Respostas da nossa central de ajuda|Olá! Posso responder a perguntas sobre nosso produto, planos e como começar.|Toque em uma pergunta para ver como respondemos|Abrir chat|Fechar chat|não lidas|Digite sua pergunta…|Sua mensagem|Enviar|Você:|Guia:|Fontes|Útil|Não útil|Obrigado pelo feedback!|Perguntas sugeridas|Não enviada.|Tentar novamente|Escrevendo uma resposta…|Falar com uma pessoa|Seu e-mail|Se ninguém estiver disponível agora, responderemos para este endereço.|Responderemos para {email}.|Em que você precisa de ajuda?|(opcional)|Pedir uma pessoa|Enviar|Cancelar|Digite um endereço de e-mail válido.|Conte-nos em que você precisa de ajuda.|Não foi possível conectar ao servidor. Tente novamente.|Aguardando alguém da nossa equipe…|{name} entrou|Você está conversando com {name}|{name} está digitando…|{name} devolveu você ao guia.|{name} encerrou a conversa.|Obrigado! Responderemos para {email}.|Nova conversa|Copiar resposta|Copiado|Dispensar",
    ar: "اسألنا عن أي شيء|إجابات من مركز المساعدة|مرحبًا! يمكنني الإجابة عن أسئلتك حول منتجنا وخططنا وطريقة البدء.|اضغط على أي سؤال لترى كيف نجيب|فتح المحادثة|إغلاق المحادثة|غير مقروءة|اكتب سؤالك…|رسالتك|إرسال|أنت:|المرشد:|المصادر|مفيد|غير مفيد|شكرًا على ملاحظاتك!|أسئلة مقترحة|لم تُرسل.|إعادة المحاولة|جارٍ كتابة الرد…|التحدث مع شخص|بريدك الإلكتروني|إذا لم يكن أحد متاحًا الآن، فسنرد على هذا العنوان.|سنرد على {email}.|بماذا تحتاج إلى مساعدة؟|(اختياري)|طلب شخص|إرسال|إلغاء|يُرجى إدخال بريد إلكتروني صالح.|يُرجى إخبارنا بما تحتاج إليه.|تعذّر الاتصال بالخادم. يُرجى المحاولة مرة أخرى.|في انتظار أحد أعضاء فريقنا…|انضم {name}|أنت تتحدث مع {name}|{name} يكتب…|أعادك {name} إلى المرشد.|أغلق {name} المحادثة.|شكرًا! سنرد على {email}.|محادثة جديدة|نسخ الرد|تم النسخ|تجاهل",
  };
  const locale = str(cfg.locale) || navigator.language || "en";
  const lang = locale.toLowerCase().split(/[-_]/)[0];
  const words = (LOCALES[lang] || "").split("|");
  Object.keys(T).forEach((k, i) => (T[k] = words[i] || T[k]));
  const rtl = /^(ar|he|fa|ur)$/.test(lang);
  const strings = Object(cfg.strings);
  for (const k in T) T[k] = (/^(title|subtitle|greeting)$/.test(k) && str(cfg[k])) || str(strings[k]) || T[k];

  // ---- storage that falls back to memory (private modes, blocked storage) ----
  const mem = {};
  const KEY = "journey-guide:";
  const store = {
    get(k) {
      try {
        const v = localStorage.getItem(KEY + k);
        if (v !== null) return v;
      } catch (e) {}
      return k in mem ? mem[k] : null;
    },
    set(k, v) {
      if (v == null) delete mem[k];
      else mem[k] = v;
      try {
        if (v == null) localStorage.removeItem(KEY + k);
        else localStorage.setItem(KEY + k, v);
      } catch (e) {}
    },
  };
  const rid = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  let visitor = store.get("visitor");
  if (!/^[A-Za-z0-9_.:-]{8,128}$/.test(visitor || "")) store.set("visitor", (visitor = rid()));
  let conversation = store.get("conversation");
  let identity = null;

  const landing = new URLSearchParams(location.search);
  const utmNow = {};
  landing.forEach((v, k) => {
    if (k.indexOf("utm_") === 0) utmNow[k] = v.slice(0, 200);
  });
  if (Object.keys(utmNow).length) store.set("utm", JSON.stringify(utmNow));

  // ---- colours with WCAG contrast ----
  const hex = (c) => (/^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(c || "") ? c : null);
  const lum = (c) => {
    let h = c.slice(1);
    if (h.length === 3) h = h.replace(/./g, "$&$&");
    const ch = [0, 2, 4].map((i) => {
      const v = parseInt(h.substr(i, 2), 16) / 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2];
  };
  const contrast = (a, b) => {
    const x = lum(a);
    const y = lum(b);
    return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
  };
  const colors = cfg.colors || {};
  const primary = hex(colors.primary || cfg.color) || "#4338ca";
  const onPrimary = hex(colors.text) || (contrast(primary, "#ffffff") >= 4.5 ? "#ffffff" : "#111827");
  const accent = contrast(primary, "#f3f4f6") >= 4.5 ? primary : "#1f2937";
  const accentDark = contrast(primary, "#1f2937") >= 4.5 ? primary : "#a5b4fc"; // readable on the dark bubbles
  const side = cfg.position === "left" || (rtl && cfg.position !== "right") ? "left" : "right";

  const CSS = `:host{all:initial!important;display:block!important;position:fixed!important;${side}:0!important;bottom:0!important;width:0!important;height:0!important;z-index:2147483647!important;visibility:visible!important;opacity:1!important;transform:none!important;contain:none!important}
.jg{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);-webkit-font-smoothing:antialiased}
.jg *{box-sizing:border-box}
.jg{--fg:#111827;--bg:#fff;--bb:#f3f4f6;--mu:#4b5563;--bd:#d1d5db;--cb:#e5e7eb;--in:#6b7280;--er:#b91c1c;--ac:${accent}}
.dark{--fg:#f3f4f6;--bg:#111827;--bb:#1f2937;--mu:#d1d5db;--bd:#4b5563;--cb:#374151;--in:#9ca3af;--er:#fca5a5;--ac:${accentDark};color-scheme:dark}
button,input,textarea{font:inherit;color:inherit}
button{cursor:pointer}
:focus-visible{outline:2px solid var(--ac);outline-offset:2px}
header :focus-visible{outline-color:currentColor}
.sr{position:absolute;width:1px;height:1px;margin:-1px;padding:0;border:0;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.launch{position:fixed;${side}:20px;bottom:20px;width:60px;height:60px;border-radius:50%;border:0;background:${primary};color:${onPrimary};box-shadow:0 6px 20px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;padding:0}
.launch svg{width:28px;height:28px;display:block}
.compose svg{width:20px;height:20px}
[dir=rtl] .compose svg{transform:scaleX(-1)}
.m,.md>*,.pt{unicode-bidi:plaintext}
.badge{position:absolute;top:-4px;${side === "right" ? "left" : "right"}:-4px;min-width:22px;height:22px;border-radius:11px;background:#b91c1c;color:#fff;font-size:12px;font-weight:700;line-height:22px;text-align:center;padding:0 6px;border:2px solid #fff}
.panel{position:fixed;${side}:20px;bottom:92px;width:380px;height:min(640px,calc(100vh - 112px));background:var(--bg);border-radius:16px;box-shadow:0 12px 48px rgba(0,0,0,.28);display:flex;flex-direction:column;overflow:hidden;overflow:clip;animation:in .18s ease-out}
@keyframes in{from{opacity:0;transform:translateY(12px)}}
.pro{position:fixed;${side}:20px;bottom:92px;max-width:300px;display:flex;align-items:flex-start;background:var(--bg);border-radius:14px;box-shadow:0 6px 24px rgba(0,0,0,.25);animation:in .18s ease-out}
.pt{background:none;border:0;padding:12px 0 12px 14px;padding-inline:14px 0;text-align:start}
.open .pro{display:none}
[hidden]{display:none!important}
header{background:${primary};color:${onPrimary};padding:14px;padding-inline:18px 12px;display:flex;align-items:center;gap:8px}
header div{flex:1;min-width:0}
h2{font-size:17px;margin:0;font-weight:700}
header p{margin:2px 0 0;font-size:13px}
.x,.nc,.dx{background:transparent;border:0;color:inherit;border-radius:8px;padding:6px;flex:none}
.x svg,.nc svg,.dx svg{width:24px;height:24px;display:block}
.foot{text-align:center;padding:0 12px 8px}
.hb{background:none;border:0;color:var(--mu);font-size:13px;text-decoration:underline;padding:4px 8px;border-radius:6px}
.log{flex:1;min-height:0;position:relative;overflow-y:auto;padding:16px;display:flex;flex-direction:column;gap:10px;overscroll-behavior:contain}
.m{max-width:86%;padding:9px 13px;border-radius:14px;overflow-wrap:anywhere}
.u{align-self:flex-end;background:${primary};color:${onPrimary};border-end-end-radius:4px;white-space:pre-wrap}
.b{align-self:flex-start;background:var(--bb);border-end-start-radius:4px}
.b a{color:var(--ac)}
.b p,.b ul,.b ol,.b pre,.tw{margin:0 0 8px}
.tw{overflow-x:auto}
table{border-collapse:collapse;font-size:14px}
th,td{border:1px solid var(--bd);padding:4px 8px;text-align:start;vertical-align:top}
th{background:var(--cb)}
.md>:last-child{margin-bottom:0}
.b ul,.b ol{padding-inline-start:20px}
code{font:13px ui-monospace,Menlo,Consolas,monospace;background:var(--cb);border-radius:4px;padding:1px 4px}
pre{overflow-x:auto;background:var(--cb);padding:8px;border-radius:6px;white-space:pre}
pre code{padding:0}
sup{line-height:0}
sup a{text-decoration:none;font-size:11px}
::placeholder{color:var(--in);opacity:1}
.b .src{margin:8px 0 0;padding:8px 0 0;border-top:1px solid var(--bd);font-size:13px;list-style:none}
.src li{margin:2px 0}
.src b{font-size:12px;color:var(--mu)}
.fb{display:flex;gap:4px;align-items:center;margin-top:6px;font-size:13px;color:var(--mu)}
.fb button{background:var(--bg);border:1px solid var(--in);border-radius:8px;padding:4px 7px;line-height:0}
.fb svg{width:16px;height:16px}
.fb button[aria-pressed=true]{background:var(--ac);border-color:var(--ac);color:var(--bg)}
.err{background:#fef2f2;color:#991b1b;align-self:flex-end;font-size:13px;padding:2px 4px}
.err button{background:none;border:0;color:#991b1b;font-weight:700;text-decoration:underline}
.ag b{display:block;font-size:12px;color:var(--mu)}
time{display:block;font-size:12px;margin-top:2px}
.b time{color:var(--mu)}
.ag div{white-space:pre-wrap}
.ty{font-size:13px;color:var(--mu)}
.st{margin:0;padding:6px 16px;font-size:13px;color:var(--mu);background:var(--bb);border-top:1px solid var(--bd)}
.note{align-self:center;background:#ecfdf5;color:#065f46;border-radius:10px;padding:8px 12px;font-size:14px;max-width:94%}
.chips{display:flex;flex-wrap:wrap;gap:6px}
.chips p{width:100%;margin:0;font-size:13px;color:var(--mu)}
.chip{background:var(--bg);border:1.5px solid var(--ac);color:var(--ac);border-radius:16px;padding:6px 12px;font-size:14px;text-align:start}
.chip:hover{background:var(--ac);color:var(--bg)}
.dots span{display:inline-block;width:7px;height:7px;margin:0 2px;border-radius:50%;background:var(--in);animation:bl 1s infinite}
.dots span:nth-child(2){animation-delay:.2s}.dots span:nth-child(3){animation-delay:.4s}
@keyframes bl{50%{opacity:.25}}
form.card{border:1px solid var(--bd);border-radius:12px;padding:12px;display:flex;flex-direction:column;gap:6px;background:var(--bg)}
label{font-size:13px;font-weight:600;display:flex;flex-direction:column;gap:4px}
.card input,.card textarea,.compose textarea{border:1px solid var(--in);border-radius:8px;padding:8px;width:100%;background:var(--bg)}
.card small{color:var(--mu)}
.card .alert{color:var(--er);font-size:13px}
.row{display:flex;gap:8px;justify-content:flex-end}
.pri{background:${primary};color:${onPrimary};border:0;border-radius:8px;padding:8px 14px;font-weight:600}
.sec{background:var(--bg);border:1px solid var(--in);border-radius:8px;padding:8px 14px}
.compose{display:flex;gap:8px;padding:10px 12px 6px;border-top:1px solid var(--bd);align-items:flex-end}
.compose textarea{flex:1;resize:none;border-radius:10px;padding:9px 11px;max-height:120px;min-height:42px}
.compose button{width:42px;height:42px;border-radius:10px;border:0;background:${primary};color:${onPrimary};display:flex;align-items:center;justify-content:center;flex:none}
.compose button:disabled{opacity:.55;cursor:default}
@media (max-width:480px){.panel{inset:0;width:100%;height:100%;border-radius:0}.open .launch{display:none}}
@media (prefers-reduced-motion:reduce){*{animation:none!important;transition:none!important}}`;

  const ICON =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">';
  const CHAT = ICON + '<path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/></svg>';
  const SHUT = ICON + '<path d="M6 6l12 12M18 6L6 18"/></svg>';
  const THUMB =
    ICON + '<path d="M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.3a2 2 0 0 0 2-1.7l1.4-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3"/></svg>';
  // Static markup only: nothing interpolated here comes from visitors, documents, the LLM or the host page.
  const TEMPLATE = `<div class="jg"><section class="panel" role="dialog" aria-labelledby="jg-t" hidden>
<header><div><h2 id="jg-t"></h2><p></p></div><button class="nc" type="button">${ICON}<path d="M12 5v14M5 12h14"/></svg></button><button class="x" type="button">${ICON}<path d="M6 6l12 12M18 6L6 18"/></svg></button></header>
<div class="log"></div><p class="st" role="status" hidden></p>
<form class="compose"><label class="sr" for="jg-in"></label><textarea id="jg-in" rows="1" maxlength="4000"></textarea><button type="submit">${ICON}<path d="M5 12h14M13 6l6 6-6 6"/></svg></button></form>
<div class="foot"><button class="hb" type="button"></button></div>
<div class="sr" aria-live="polite" aria-atomic="true"></div></section>
<button class="launch" type="button" aria-expanded="false"><span class="ic"></span><span class="badge" aria-hidden="true" hidden></span></button>
<div class="pro" role="status" hidden><button class="pt" type="button"></button><button class="dx" type="button">${ICON}<path d="M6 6l12 12M18 6L6 18"/></svg></button></div></div>`;

  // ---- DOM ----
  // Our constant markup only goes through innerHTML; pages enforcing Trusted Types must allow this policy name.
  let policy = null;
  try {
    policy = w.trustedTypes && w.trustedTypes.createPolicy("journey-guide", { createHTML: (s) => s });
  } catch (e) {}
  const html = (node, markup) => (node.innerHTML = policy ? policy.createHTML(markup) : markup);
  const host = d.createElement("journey-guide");
  const root = host.attachShadow({ mode: "open" });
  try {
    const sheet = new CSSStyleSheet(); // not subject to the host page's CSP style-src, unlike <style>
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } catch (e) {
    root.appendChild(d.createElement("style")).textContent = CSS;
  }
  const box = d.createElement("div");
  html(box, TEMPLATE);
  root.appendChild(box.firstChild);
  const $ = (s) => root.querySelector(s);
  const jg = $(".jg");
  const panel = $(".panel");
  const log = $(".log");
  const form = $(".compose");
  const input = $("textarea");
  const sendBtn = $(".compose button");
  const launcher = $(".launch");
  const badge = $(".badge");
  const live = $("[aria-live]");
  const closeBtn = $(".x");
  const newBtn = $(".nc");
  const contactBtn = $(".hb");
  const bubble = $(".pro");
  jg.lang = LOCALES[lang] || lang === "en" ? locale : "en";
  jg.dir = rtl ? "rtl" : "ltr";
  // theme: "dark", "light", or (default) whatever the visitor's system prefers, following its changes
  const scheme = w.matchMedia("(prefers-color-scheme:dark)");
  const theme = () => jg.classList.toggle("dark", cfg.theme === "dark" || (cfg.theme !== "light" && scheme.matches));
  theme();
  scheme.addEventListener("change", theme);
  $("h2").textContent = T.title;
  $("header p").textContent = T.subtitle;
  contactBtn.textContent = T.human;
  closeBtn.setAttribute("aria-label", T.close);
  newBtn.setAttribute("aria-label", T.fresh);
  $("label").textContent = T.input;
  input.placeholder = T.placeholder;
  sendBtn.setAttribute("aria-label", T.send);
  panel.id = "jg-panel";
  launcher.setAttribute("aria-controls", "jg-panel");

  // <shared-renderer> from here to its end marker the staff page runs too (app/staff/page.py serves it)
  const el = (parent, tag, cls, text) => {
    const n = d.createElement(tag);
    if (cls) n.className = cls;
    if (text != null) n.textContent = text;
    if (parent) parent.appendChild(n);
    return n;
  };
  const button = (parent, cls, text, onClick) => {
    const b = el(parent, "button", cls, text);
    b.type = "button";
    b.onclick = onClick;
    return b;
  };

  // ---- safe Markdown: block and inline parsing into DOM nodes, text via textContent/append only ----
  const safeUrl = (href) => {
    try {
      const u = new URL(href);
      return /^(https?|mailto):$/.test(u.protocol) ? u.href : null;
    } catch (e) {
      return null;
    }
  };
  const link = (parent, href, text) => {
    const url = safeUrl(href);
    if (!url) return parent.append(text);
    const a = el(parent, "a", "", text);
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  };
  // `code` and ``code with a ` in it``: a <code> element holding text (the server turns HTML <code> into these)
  const INLINE =
    /(`+)(?!\s*\1)(.+?)\1(?!`)|\*\*(.+?)\*\*|(?<!\w)__(\S(?:.*?\S)?)__(?!\w)|\*([^*\s][^*]*?)\*|\[([^\]]+)\]\(((?:[^()\s]|\([^()\s]*\))+)\)|(\b(?:https?:\/\/|mailto:)[^\s<>()]*[^\s<>().,;:!?'"])|\[(\d{1,2})\]/g;
  const inline = (parent, text, sources, inLink) => {
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      if (inLink && !m[2]) continue; // link text: code, and nothing that would nest a link
      parent.append(text.slice(last, m.index));
      last = m.index + m[0].length;
      if (m[2]) el(parent, "code", "", m[2].replace(/^ (.*) $/, "$1"));
      else if (m[3] || m[4]) inline(el(parent, "strong"), m[3] || m[4], sources);
      else if (m[5]) inline(el(parent, "em"), m[5], sources);
      else if (m[6]) inline(link(parent, m[7], "") || parent, m[6], sources, 1);
      else if (m[8]) link(parent, m[8], m[8]);
      else {
        const s = sources[m[9] - 1];
        const a = s ? link(el(parent, "sup"), s.url, m[0]) : parent.append(m[0]);
        if (a) a.title = s.title || "";
      }
    }
    parent.append(text.slice(last));
  };
  // a table row: "| a | b |" or "a | b" (cells trimmed, outer pipes optional)
  const cells = (line) => line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
  const rule = (line) => /^[\s|:-]*\|[\s|:-]*$/.test(line) && /-/.test(line); // |---|:--:|
  const markdown = (target, text, sources) => {
    target.textContent = "";
    let list = null;
    let para = null;
    let code = null;
    let table = null; // the tbody that rows go into
    let skip = false;
    const lines = String(text).replace(/\r/g, "").split("\n");
    lines.forEach((line, i) => {
      let m;
      if (skip) return void (skip = false); // the |---| line under a table's header
      if (table && line.includes("|")) {
        const tr = el(table, "tr");
        return cells(line).forEach((c) => inline(el(tr, "td"), c, sources));
      }
      table = null;
      if (code) {
        if (/^\s*```/.test(line)) code = null;
        else code.append(line + "\n");
      } else if (/^\s*```/.test(line)) {
        code = el(el(target, "pre"), "code");
        list = para = null;
      } else if (!line.trim()) {
        list = para = null;
      } else if (line.includes("|") && rule(lines[i + 1] || "")) {
        const t = el(el(target, "div", "tw"), "table");
        const tr = el(el(t, "thead"), "tr");
        cells(line).forEach((c) => inline(el(tr, "th"), c, sources));
        table = el(t, "tbody");
        skip = true;
        list = para = null;
      } else if ((m = /^\s*([-*+•]|(\d{1,3})[.)])\s+(.*)$/.exec(line))) {
        const tag = m[2] ? "OL" : "UL";
        if (!list || list.tagName !== tag) {
          list = el(target, tag);
          if (m[2] && m[2] !== "1") list.start = +m[2];
        }
        inline(el(list, "li"), m[3], sources);
        para = null;
      } else if ((m = /^#{1,6}\s+(.*)$/.exec(line))) {
        inline(el(el(target, "p"), "strong"), m[1], sources);
        list = para = null;
      } else if (list && /^\s/.test(line)) {
        const item = list.lastChild;
        item.append(" ");
        inline(item, line.trim(), sources);
      } else {
        if (para) el(para, "br");
        else para = el(target, "p");
        list = null;
        inline(para, line.trim(), sources);
      }
    });
  };
  // </shared-renderer>

  // ---- events and the page ----
  const handlers = Object.create(null);
  const emit = (name, detail) => {
    const fns = (handlers[name] || []).concat(Object(cfg.on)[name] || []);
    fns.forEach((fn) => {
      if (typeof fn !== "function") return;
      try {
        fn(detail);
      } catch (e) {
        console.error("JourneyGuide", name, "handler failed", e);
      }
    });
  };
  const page = () => {
    let utm = {};
    try {
      utm = JSON.parse(store.get("utm") || "{}");
    } catch (e) {}
    return { url: location.href.slice(0, 2048), title: d.title.slice(0, 512), referrer: d.referrer.slice(0, 2048), utm };
  };
  const api = async (path, body) => {
    const res = await fetch(base + path, {
      method: body ? "POST" : "GET",
      headers: body ? { "content-type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const e = new Error(data.error || data.detail || "HTTP " + res.status);
      e.status = res.status;
      throw e;
    }
    return data;
  };

  // ---- the conversation view ----
  let busy = false;
  let unread = 0;
  let loaded = false;
  let chipsBox = null;
  let stick = true; // follow new text unless the visitor scrolled up to read
  log.onscroll = () => (stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40);
  // To the end, but a long latest answer (followed by nothing but its suggestions) shows its start.
  let pin = null;
  const scroll = (force) => {
    if (!(force || stick)) return;
    log.scrollTop = log.scrollHeight;
    const next = pin && pin.nextElementSibling;
    if (pin && pin.isConnected && (!next || next === chipsBox)) {
      log.scrollTop = Math.min(log.scrollTop, pin.offsetTop - 12);
    }
  };
  const announce = (text) => {
    live.textContent = "";
    setTimeout(() => (live.textContent = text), 50);
  };

  // when a message was written, in the widget's locale: <time datetime=ISO>16:05</time>
  let clock;
  try {
    clock = new Intl.DateTimeFormat(jg.lang, { timeStyle: "short" });
  } catch (e) {
    clock = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });
  }
  const stamp = (m, at) => {
    const t = new Date(at || Date.now());
    const e = el(m, "time", "", clock.format(t));
    e.dateTime = t.toISOString();
  };
  const addUser = (text, at) => {
    const m = el(log, "div", "m u");
    el(m, "span", "sr", T.you + " ");
    m.append(text);
    stamp(m, at);
    scroll(true);
    return m;
  };
  const dots = (m) => {
    const body = el(m, "div", "dots");
    for (let i = 0; i < 3; i++) el(body, "span");
    return body;
  };
  const addBot = (after) => {
    const m = el(null, "div", "m b");
    if (after) after.after(m);
    else log.appendChild(m);
    el(m, "span", "sr", T.bot + " ");
    dots(m).setAttribute("aria-label", T.busy);
    m.setAttribute("aria-busy", "true");
    pin = m;
    scroll(true);
    return m;
  };
  const note = (text, loud) => {
    el(log, "div", "note", text);
    if (loud) announce(text);
    scroll(true);
  };
  const fill = (s, v) => s.replace(/\{\w+\}/, () => v);

  const chips = (questions, label, handoff) => {
    if (chipsBox) chipsBox.remove();
    chipsBox = null;
    if (!questions.length && !handoff) return;
    chipsBox = el(log, "div", "chips");
    chipsBox.setAttribute("role", "group");
    chipsBox.setAttribute("aria-label", label || T.suggested);
    if (label) el(chipsBox, "p", "", label);
    questions.slice(0, 4).forEach((q) =>
      button(chipsBox, "chip", q, () => {
        input.focus(); // the chip is about to go: keep the focus in the widget
        send(q);
      })
    );
    if (handoff) button(chipsBox, "chip", T.human, showHandoff);
    scroll();
  };

  const feedback = (m, messageId, current) => {
    const bar = el(m, "div", "fb");
    const status = el(bar, "span", "sr");
    status.setAttribute("aria-live", "polite");
    const rate = (rating) => async () => {
      const prev = [...bar.querySelectorAll("button")].map((b) => b.getAttribute("aria-pressed"));
      bar.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", b.dataset.r === rating));
      try {
        await api(`v1/conversations/${conversation}/feedback`, { visitor_id: visitor, message_id: messageId, rating });
        status.textContent = T.thanks;
        status.className = "";
        emit("feedback", { conversationId: conversation, messageId, rating });
      } catch (e) {
        bar.querySelectorAll("button").forEach((b, i) => b.setAttribute("aria-pressed", prev[i]));
        status.textContent = T.offline;
        status.className = "";
      }
    };
    [
      ["up", THUMB, T.up],
      ["down", THUMB.replace("<path", '<path transform="matrix(1 0 0 -1 0 24)"'), T.down],
    ].forEach(([r, svg, label]) => {
      const b = button(bar, "", "", rate(r));
      html(b, svg);
      b.dataset.r = r;
      b.setAttribute("aria-label", label);
      b.setAttribute("aria-pressed", current === r);
    });
    const copy = button(bar, "", "", async () => {
      try {
        await navigator.clipboard.writeText(m.querySelector(".md").innerText);
        status.textContent = T.copied;
        status.className = "";
      } catch (e) {}
    });
    html(copy, ICON + '<rect x="9" y="9" width="12" height="12" rx="2"/><path d="M5 15V5a2 2 0 0 1 2-2h10"/></svg>');
    copy.setAttribute("aria-label", T.copy);
  };

  const finish = (m, turn) => {
    const sources = turn.sources || [];
    const body = m.querySelector("div");
    body.className = "md";
    body.removeAttribute("aria-label");
    markdown(body, turn.reply, sources);
    m.removeAttribute("aria-busy");
    const shown = sources.filter((s) => safeUrl(s.url));
    if (shown.length) {
      const list = el(m, "ol", "src");
      el(el(list, "li"), "b", "", T.sources);
      sources.forEach((s, i) => {
        if (safeUrl(s.url)) el(link(el(list, "li"), s.url, `[${i + 1}] `), "bdi", "", s.title || s.url);
      });
    }
    stamp(m, turn.created_at);
    if (turn.message_id) feedback(m, turn.message_id, turn.feedback);
  };

  // Messages not sent yet, oldest first ({text, bubble}); kept across reloads, sent in order, each answer under its
  // question. After a network or server failure they go out again by themselves, with a growing pause.
  let queue = [];
  let again = 0;
  let pause = 0;
  const keep = () => store.set("pending", queue.length ? JSON.stringify(queue.map((q) => q.text)) : null);
  const unsent = () => {
    const v = store.get("pending");
    try {
      const a = JSON.parse(v);
      if (Array.isArray(a)) return a.map(String);
    } catch (e) {}
    return v ? [v] : []; // one message, as stored by earlier versions
  };
  const failed = (why, auto) => {
    root.querySelectorAll(".err:not(.no)").forEach((e) => e.remove());
    live.textContent = ""; // the polite region must not read the previous reply again
    queue.forEach((q, i) => {
      const bar = el(null, "div", "m err", (why || T.failed) + " ");
      if (!i) bar.setAttribute("role", "alert"); // announced once, however many are unsent
      q.bubble.after(bar);
      button(bar, "", T.retry, () => {
        input.focus();
        flush();
      });
    });
    clearTimeout(again);
    if (auto) again = setTimeout(flush, (pause = Math.min(2 * pause || 5000, 60000)));
    scroll(true);
  };

  // ---- SSE over fetch (EventSource cannot POST) ----
  const readEvents = async (res, on) => {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let m;
      while ((m = /\r?\n\r?\n/.exec(buf))) {
        const block = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        let name = "message";
        let id = 0;
        const data = [];
        block.split(/\r?\n/).forEach((line) => {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          else if (line.startsWith("id:")) id = +line.slice(3) || 0;
        });
        if (data.length) on(name, JSON.parse(data.join("\n")), id);
      }
    }
  };

  // A new message from the visitor: it joins the unsent ones, which all go out in order.
  const send = async (text) => {
    text = String(text || "").trim();
    if (!text || busy) return null;
    chips([]);
    const item = { text, bubble: addUser(text) };
    emit("message", { text, conversationId: conversation });
    queue.push(item);
    keep();
    return flush(item);
  };
  // Sends the unsent messages oldest first, stopping at the first failure; the reply to `want`, or null.
  const flush = async (want) => {
    if (busy || !queue.length) return null;
    clearTimeout(again);
    root.querySelectorAll(".err:not(.no)").forEach((e) => e.remove());
    let out = null;
    while (queue.length) {
      const item = queue[0];
      const done = await deliver(item);
      if (!done) return null;
      queue = queue.filter((q) => q !== item);
      keep();
      pause = 0;
      if (item === want && !done.refused) out = done;
    }
    return out;
  };
  const deliver = async ({ text, bubble: user }) => {
    busy = true;
    sendBtn.disabled = true;
    chips([]);
    typed(false);
    let m = lstate === "live" ? null : addBot(user); // a person answers a live conversation: no bot bubble
    let done = null;
    try {
      for (let attempt = 0; attempt < 2 && !done; attempt++) {
        const res = await fetch(base + "v1/chat/stream", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            message: text,
            conversation_id: conversation || undefined,
            visitor_id: visitor,
            page: page(),
            identity: identity || undefined,
          }),
        });
        if (res.status === 404 && conversation && !attempt) {
          store.set("conversation", (conversation = null)); // the conversation is gone: start a new one
          continue;
        }
        if (!res.ok || !res.body) {
          const data = await res.json().catch(() => ({}));
          const st = res.status;
          // refused (too long, invalid...): sending it again would fail again, so it leaves the queue
          throw { shown: st < 500 && (data.error || "HTTP " + st), drop: st < 500 && st !== 429 };
        }
        let streamed = "";
        let sources = [];
        let frame = 0;
        await readEvents(res, (name, data) => {
          if (name === "sources") sources = data.sources || [];
          else if (name === "token") {
            streamed += data.text || "";
            if (!frame)
              frame = requestAnimationFrame(() => {
                frame = 0;
                if (done) return;
                const body = (m = m || addBot(user)).querySelector("div");
                body.className = "md";
                markdown(body, streamed, sources);
                scroll();
              });
          } else if (name === "done") done = data;
          else if (name === "error") throw {};
        });
        if (!done) throw {};
      }
      store.set("conversation", (conversation = done.conversation_id));
      const h = done.handoff || {};
      if (h.requested && !active()) {
        lstate = h.status; // the guide asked for a person itself
        if (lstate === "waiting" && done.next_steps) note(done.next_steps);
        listen();
      }
      if (done.mode === "human") {
        if (m) m.remove();
        return done;
      }
      finish((m = m || addBot(user)), done);
      chips(done.suggestions || [], "", h.suggested && !active());
      announce(T.bot + " " + m.querySelector(".md").textContent);
      if (!isOpen()) {
        unread++;
        showBadge();
      }
      emit("reply", done);
      return done;
    } catch (e) {
      if (m) m.remove();
      emit("error", { text, error: e.shown || "network" });
      if (!e.drop) return failed(e.shown, 1), null;
      const bar = el(null, "div", "m err no", e.shown);
      bar.setAttribute("role", "alert");
      user.after(bar);
      return { refused: e.shown };
    } finally {
      busy = false;
      sendBtn.disabled = false;
      scroll();
    }
  };

  // ---- live handoff: a person from the team joins the conversation ----
  let lstate = null; // waiting | unavailable | live | bot | closed
  let agent = "";
  let lemail = "";
  let lastId = 0; // the last live event shown: the resume point, kept across reloads
  let ctl = null;
  let retry = 0;
  let timer = 0;
  let typingBox = null;
  let askForm = null;
  let handForm = null;
  const status = $(".st");
  const active = () => /^(waiting|unavailable|live)$/.test(lstate);
  const showState = () => {
    const s = lstate === "waiting" ? T.waiting : lstate === "live" ? fill(T.chatting, agent) : "";
    if (status.textContent !== s) status.textContent = s;
    status.hidden = !s;
    contactBtn.hidden = active() || !!handForm; // not under its own open form
    if (lastId) store.set("live", [conversation, lastId, active() ? 1 : ""].join(" ")); // resume point
  };
  const validEmail = (v) => /^[^@\s<>"']{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$/.test(v);
  const knownEmail = () => (identity && validEmail(identity.email || "") ? identity.email : "");
  const typing = (name) => {
    if (typingBox) clearTimeout(typingBox.t), typingBox.remove();
    typingBox = null;
    if (!name) return;
    typingBox = el(log, "div", "m b ty", fill(T.typing, name));
    dots(typingBox);
    typingBox.t = setTimeout(typing, 8000); // a lost "stopped typing" must not leave it forever
    scroll();
  };
  const card = (title) => {
    const f = el(log, "form", "card");
    f.noValidate = true;
    if (title) el(f, "strong", "", title);
    return f;
  };
  const field = (f, label, tag) => el(el(f, "label", "", label), tag || "input");
  const alertBox = (f) => {
    const a = el(f, "div", "alert");
    a.setAttribute("role", "alert");
    return a;
  };
  const askEmail = () => {
    if (askForm || lemail || knownEmail()) return;
    const f = (askForm = card());
    const email = field(f, T.email);
    email.type = "email";
    email.autocomplete = "email";
    const alert = alertBox(f);
    el(el(f, "div", "row"), "button", "pri", T.sendEmail).type = "submit";
    f.onsubmit = async (ev) => {
      ev.preventDefault();
      const v = email.value.trim();
      if (!validEmail(v)) return (alert.textContent = T.badEmail), email.focus();
      try {
        await api(`v1/conversations/${conversation}/contact`, { visitor_id: visitor, email: v });
        lemail = v;
        f.remove();
        askForm = null;
        note(fill(T.sent, v), 1);
        input.focus();
      } catch (e) {
        alert.textContent = e.status && e.status < 500 ? e.message : T.offline;
      }
    };
    scroll(true);
  };
  // One live event (from the stream, or from the transcript when `old`): shown once, in order.
  const onLive = (kind, e, id, old) => {
    if (id) {
      if (id <= lastId) return;
      lastId = id;
    }
    const x = e.data && typeof e.data === "object" ? e.data : e;
    const who = x.name || agent;
    if (kind === "typing") return x.who === "agent" && typing(x.typing && who);
    if (kind === "handoff.requested") {
      lstate = "waiting";
      lemail = x.email || lemail;
    } else if (kind === "handoff.unavailable") {
      lstate = "unavailable";
      note(x.text, !old);
      askEmail();
    } else if (kind === "agent.joined") {
      lstate = "live";
      agent = who;
      if (askForm) askForm.remove(), (askForm = null);
      note(fill(T.joined, who), !old);
    } else if (kind === "agent.message") {
      typing();
      const m = el(log, "div", "m b ag");
      el(m, "b", "", who);
      el(m, "div", "", x.text);
      stamp(m, e.created_at);
      scroll(!old);
      if (!old) {
        announce(who + ": " + x.text);
        if (!isOpen()) unread++, showBadge();
      }
    } else if (kind === "visitor.message") {
      if (old && lstate === "live") addUser(x.text, e.created_at); // sent from this widget, shown when it was sent
    } else if (kind === "handoff.returned" || kind === "handoff.closed") {
      typing();
      lstate = kind === "handoff.closed" ? "closed" : "bot";
      note(x.text || fill(lstate === "bot" ? T.returned : T.closed, who), !old);
      if (askForm) askForm.remove(), (askForm = null);
      unlisten(); // the bot has the conversation again: a new request opens a new stream
    }
    showState();
  };
  // GET .../live as server-sent events over fetch; resumes after the last id with a growing pause.
  const listen = () => {
    clearTimeout(timer);
    if (ctl || !conversation || !active()) return showState();
    showState();
    const c = (ctl = new AbortController());
    (async () => {
      try {
        const q = `v1/conversations/${conversation}/live?visitor_id=${encodeURIComponent(visitor)}`;
        const res = await fetch(base + q + (lastId ? "&after=" + lastId : ""), { signal: c.signal, cache: "no-store" });
        if (res.status === 404) lstate = null;
        if (!res.ok || !res.body) throw 0;
        await readEvents(res, (name, data, id) => {
          retry = 0;
          onLive(name, data, id);
        });
      } catch (e) {}
      if (ctl !== c) return;
      ctl = null;
      if (active()) timer = setTimeout(listen, Math.min(500 * 2 ** retry++, 10000));
    })();
  };
  const unlisten = () => {
    if (ctl) ctl.abort();
    ctl = null;
    clearTimeout(timer);
  };
  w.addEventListener("offline", unlisten);
  w.addEventListener("online", () => {
    retry = 0;
    listen();
    flush();
  });
  // Typing while live: at most one "typing" every 2 s, "stopped" after 3 s without a key or on send.
  let typedAt = 0;
  let idle = 0;
  const typed = (on) => {
    clearTimeout(idle);
    if (lstate !== "live" || (!on && !typedAt)) return;
    if (on) {
      idle = setTimeout(typed, 3000, false);
      if (Date.now() - typedAt < 2000) return;
    }
    typedAt = on ? Date.now() : 0;
    api(`v1/conversations/${conversation}/typing`, { visitor_id: visitor, typing: on }).catch(() => {});
  };

  function showHandoff() {
    if (active()) return input.focus();
    if (handForm) return handForm.querySelector("input,textarea").focus();
    chips([]);
    const f = (handForm = card(T.human));
    showState();
    const known = knownEmail();
    let email = null;
    if (known) el(f, "small", "", fill(T.known, known));
    else {
      email = field(f, `${T.email} ${T.optional}`);
      email.type = "email";
      email.autocomplete = "email";
      el(f, "small", "", T.emailHelp);
    }
    const msg = field(f, conversation ? `${T.message} ${T.optional}` : T.message, "textarea");
    msg.rows = 3;
    msg.maxLength = 4000;
    const alert = alertBox(f);
    const row = el(f, "div", "row");
    button(row, "sec", T.cancel, () => {
      f.remove();
      handForm = null;
      showState();
      contactBtn.focus();
    });
    el(row, "button", "pri", T.submit).type = "submit";
    f.onsubmit = async (ev) => {
      ev.preventDefault();
      const address = email ? email.value.trim() : known;
      const text = msg.value.trim();
      alert.textContent = "";
      const stop = (why, field) => {
        alert.textContent = why;
        if (field) field.focus();
      };
      if (address && !validEmail(address)) return stop(T.badEmail, email);
      if (!conversation && !text) return stop(T.needMessage, msg);
      if (!conversation && !(await send(text))) return stop(T.offline);
      log.appendChild(f);
      try {
        const out = await api(`v1/conversations/${conversation}/handoff`, {
          visitor_id: visitor,
          email: address || undefined,
          message: text || undefined,
          page: page(),
        });
        f.remove();
        handForm = null;
        lemail = out.email || address;
        if (out.status === "waiting" && lstate !== "waiting") note(out.next_steps, 1);
        if (!active()) lstate = out.status === "unavailable" ? "unavailable" : "waiting";
        listen(); // what happens next (waiting, no one available, someone joined) comes as live events
        input.focus();
        emit("handoff", { conversationId: conversation, email: lemail || null, status: out.status });
      } catch (e) {
        alert.textContent = e.status && e.status < 500 ? e.message : T.offline;
      }
    };
    scroll(true);
    (email || msg).focus();
  }

  // ---- restoring the conversation and the empty chat ----
  const starters = async () => {
    try {
      const out = await api("v1/suggestions?page_url=" + encodeURIComponent(location.href.slice(0, 2000)));
      if (!log.querySelector(".u") && !said) chips(out.suggestions || [], T.starters);
    } catch (e) {}
  };
  const empty = () => {
    const m = el(log, "div", "m b");
    markdown(el(m, "div"), T.greeting, []);
    starters();
  };
  const restore = async () => {
    loaded = true;
    log.textContent = "";
    const pending = unsent();
    let turns = [];
    if (conversation) {
      try {
        const t = await api(`v1/conversations/${conversation}?visitor_id=${encodeURIComponent(visitor)}`);
        turns = t.turns;
        const lv = t.live || {};
        const saved = (store.get("live") || "").split(" ");
        lemail = lv.email || "";
        // exchanges and live events (someone joined, their messages...) in the order they happened
        turns
          .map((t) => [t.created_at, () => (addUser(t.question, t.created_at), t.reply && finish(addBot(), t))])
          .concat((lv.events || []).map((e) => [e.created_at, () => onLive(e.kind, e, e.id, 1)]))
          .sort((a, b) => Date.parse(a[0]) - Date.parse(b[0]))
          .forEach((x) => x[1]());
        lstate = lv.status || lstate;
        agent = (lv.agent && (lv.agent.name || lv.agent)) || agent;
        if (saved[0] === conversation) lastId = Math.max(lastId, +saved[1] || 0);
        const last = turns[turns.length - 1];
        if (last) chips(pending.length || active() ? [] : last.suggestions, "", false);
        if (last && pending[0] === last.question) pending.shift(); // it reached the server before the reload
        listen();
      } catch (e) {
        if (e.status === 404) store.set("conversation", (conversation = null));
      }
    }
    if (!turns.length) empty();
    queue = pending.map((text) => ({ text, bubble: addUser(text) })).concat(queue); // + any sent meanwhile
    keep();
    if (queue.length) failed("", 1);
    if (said) proSay();
    scroll(true);
  };

  // ---- open, close, unread ----
  const isOpen = () => !panel.hidden;
  const showBadge = () => {
    badge.hidden = !unread;
    badge.textContent = unread;
    launcher.setAttribute("aria-label", unread ? `${T.open} (${unread} ${T.unread})` : isOpen() ? T.close : T.open);
  };
  const icon = $(".ic");
  // On a phone the open panel covers the page (the CSS's max-width:480px): it is modal, Tab cycles inside it.
  const phone = w.matchMedia("(max-width:480px)");
  const modal = () => panel.setAttribute("aria-modal", phone.matches);
  modal();
  phone.addEventListener("change", modal);
  const trap = (ev) => {
    const all = [...panel.querySelectorAll("button,a[href],input,textarea")].filter(
      (e) => !e.disabled && e.getClientRects().length
    );
    const at = root.activeElement;
    if (all.length && (ev.shiftKey ? at === all[0] || !at : at === all[all.length - 1])) {
      ev.preventDefault();
      all[ev.shiftKey ? all.length - 1 : 0].focus();
    }
  };
  const open = (focus) => {
    if (isOpen()) return;
    panel.hidden = false;
    jg.classList.add("open");
    html(icon, SHUT);
    launcher.setAttribute("aria-expanded", "true");
    unread = 0;
    showBadge();
    store.set("open", "1");
    if (!bubble.hidden) {
      proHide("open"); // opened from the proactive message: it is the guide's first words in the chat
      said = 1;
      if (loaded) proSay();
    }
    if (!loaded) restore();
    if (focus !== false) input.focus();
    scroll(true);
    emit("open");
  };
  const close = () => {
    if (!isOpen()) return;
    panel.hidden = true;
    jg.classList.remove("open");
    html(icon, CHAT);
    launcher.setAttribute("aria-expanded", "false");
    showBadge();
    store.set("open", null);
    launcher.focus();
    emit("close");
  };

  html(icon, CHAT);
  showBadge();
  launcher.onclick = () => (isOpen() ? close() : open());
  launcher.onpointerenter = launcher.onfocus = () => loaded || restore(); // get ready before the click
  closeBtn.onclick = close;
  contactBtn.onclick = showHandoff;
  form.onsubmit = (ev) => {
    ev.preventDefault();
    if (busy || !input.value.trim()) return;
    const text = input.value;
    input.value = "";
    store.set("draft", null);
    grow();
    send(text);
  };
  const grow = () => {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, 120) + "px";
  };
  input.value = store.get("draft") || "";
  input.oninput = () => {
    store.set("draft", input.value || null);
    typed(!!input.value.trim());
    grow();
  };
  input.onkeydown = (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit();
    }
  };
  // Keys typed in the widget stay in the widget: host-page shortcuts must not steal them.
  ["keydown", "keyup", "keypress"].forEach((type) =>
    jg.addEventListener(type, (ev) => {
      if (type === "keydown" && ev.key === "Escape" && isOpen()) {
        ev.preventDefault();
        if (handForm && handForm.contains(ev.target)) handForm.querySelector(".sec").click(); // Escape cancels the form
        else close();
      }
      if (type === "keydown" && ev.key === "Tab" && isOpen() && phone.matches) trap(ev);
      ev.stopPropagation();
    })
  );

  const identify = (who) => {
    identity = null;
    if (who && typeof who === "object") {
      identity = { known_customer: who.known_customer != null ? !!who.known_customer : !!(who.id || who.email) };
      ["id", "email", "name", "plan"].forEach((k) => {
        if (who[k] != null && who[k] !== "") identity[k] = String(who[k]).slice(0, 200);
      });
    }
    emit("identify", identity);
  };
  // A new conversation for the same visitor (the header's + button); the old one stays on the server.
  const fresh = (keys) => {
    ["conversation", "pending", "live"].concat(keys || []).forEach((k) => store.set(k, null));
    queue = [];
    clearTimeout(again);
    unlisten();
    typed(false);
    conversation = handForm = askForm = chipsBox = lstate = typingBox = said = null;
    lastId = 0;
    agent = lemail = "";
    showState();
    loaded = false;
    log.textContent = "";
    if (isOpen()) restore();
  };
  newBtn.onclick = () => {
    if (busy) return;
    fresh();
    input.focus();
    emit("new");
  };
  const reset = () => {
    store.set("visitor", (visitor = rid()));
    identity = null;
    input.value = "";
    fresh(["draft", "utm"]);
    emit("reset");
  };
  if (cfg.identity) identify(cfg.identity);

  // ---- proactive messages: the server's rules (knowledge/proactive.yaml, docs/widget.md) pick one from the visitor's
  // journey, the page, the time on it and the visit. Nothing is asked at load: first after 3 s on the page, then when
  // the server says a rule needs more time. `proactive: false` switches them off.
  const t0 = Date.now();
  let visits = +store.get("visits") || 0;
  if (t0 - store.get("seen") > 18e5) visits++; // a new visit after 30 minutes away
  store.set("visits", visits || 1);
  store.set("seen", t0);
  let pro = null; // the message shown by the launcher
  let said = null; // opened: its bubble in the chat
  const proSay = () => {
    if (said.remove) said.remove();
    said = el(log, "div", "m b", pro.text);
    chips(pro.chips || []);
    scroll(true);
  };
  function proHide(action) {
    bubble.hidden = true;
    api(`v1/proactive/${pro.id}/${action}`, { visitor_id: visitor }).catch(() => {});
    if (bubble.contains(root.activeElement)) launcher.focus();
  }
  const ask = async (n) => {
    if (active() || n > 5) return;
    if (isOpen() || busy) return setTimeout(ask, 5000, n + 1); // not while the visitor is chatting
    try {
      const out = await api("v1/proactive", {
        visitor_id: visitor,
        conversation_id: conversation || undefined,
        page: page(),
        seconds_on_page: (Date.now() - t0) / 1000,
        visits: visits || 1,
      });
      if (out.retry_after) setTimeout(ask, out.retry_after * 1000, n + 1);
      if (!(pro = out.message)) return;
      store.set("conversation", (conversation = pro.conversation_id)); // the conversation it opens
      $(".pt").textContent = pro.text;
      bubble.hidden = false;
      emit("proactive", { id: pro.rule, text: pro.text });
    } catch (e) {}
  };
  $(".pt").onclick = () => open();
  $(".dx").onclick = () => proHide("dismiss");
  $(".dx").setAttribute("aria-label", T.dismiss);
  if (cfg.proactive !== false) setTimeout(ask, 3000, 0);

  const publicApi = {
    open: () => open(),
    close,
    toggle: () => (isOpen() ? close() : open()),
    isOpen,
    identify,
    reset,
    send: (text) => (open(), send(text)),
    on(name, fn) {
      (handlers[name] = handlers[name] || []).push(fn);
      return publicApi;
    },
    off(name, fn) {
      handlers[name] = (handlers[name] || []).filter((f) => f !== fn);
      return publicApi;
    },
    get visitorId() {
      return visitor;
    },
    get conversationId() {
      return conversation;
    },
    config: cfg,
    [LOADED]: true,
  };
  w.JourneyGuide = publicApi;

  const mount = () => {
    // In the top layer (a manual popover) nothing on the host page can cover it or move it: not a later overlay at
    // the highest z-index, not a transformed <body> (which would make position:fixed relative to itself).
    if (host.showPopover) {
      host.popover = "manual";
      (d.body || d.documentElement).appendChild(host);
      host.showPopover();
    } else d.documentElement.appendChild(host); // at least outside a transformed <body>
    if (store.get("open") || cfg.open) open(false);
    else if ((store.get("live") || "").split(" ")[2]) restore(); // a person may write while the chat is closed
    emit("ready", publicApi);
    if (typeof cfg.onReady === "function") cfg.onReady(publicApi);
    w.dispatchEvent(new CustomEvent("journeyguide:ready", { detail: publicApi }));
  };
  if (d.body) mount();
  else d.addEventListener("DOMContentLoaded", mount);
})();
