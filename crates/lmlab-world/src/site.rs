//! Web sites of the fictional crawl: domains, and the boilerplate around every page
//! (navigation, cookie banner, footer) that a text extractor has to strip.

use rand::Rng;

use crate::names::NameGen;
use crate::page::PageKind;

#[derive(Debug, Clone)]
pub struct Site {
    pub domain: String,
    pub name: String,
    /// Path prefix for pages (e.g. "/wiki/").
    pub path: &'static str,
    /// Whether the HTTP header names the charset (otherwise only the page's <meta> does).
    pub charset_in_header: bool,
    pub server: &'static str,
}

const SERVERS: [&str; 4] = ["nginx/1.24.0", "Apache/2.4.58 (Unix)", "cloudflare", "LiteSpeed"];

/// Domain patterns per page kind: `{}` is an invented name (lower case).
fn patterns(kind: PageKind) -> (&'static [&'static str], &'static str) {
    use PageKind::*;
    match kind {
        Encyclopedia => (&["{}pedia.org", "wiki.{}.org", "{}-encyclopedia.org"], "/wiki/"),
        News => (&["{}news.com", "daily{}.com", "{}-times.net", "the{}post.com"], "/news/"),
        Forum => (&["forum.{}.net", "{}board.net", "talk.{}.org"], "/thread/"),
        Story => (&["{}tales.net", "stories.{}.org", "{}fiction.com"], "/story/"),
        Howto => (&["{}guides.com", "howto.{}.net", "{}-tips.com"], "/guide/"),
        Clickbait => (&["{}buzz.com", "viral{}.net", "{}shock.com"], "/p/"),
        Spam => (&["best-{}-deals.biz", "cheap{}.info", "{}-shop-online.biz"], "/offer/"),
        Misinformation => (&["{}truth.info", "real{}facts.net", "{}-insider.info"], "/article/"),
        Propaganda => (&["{}patriot.org", "voiceof{}.org", "{}-unity.org"], "/message/"),
        Boilerplate => (&["{}.com", "www.{}.net", "{}-portal.com"], "/page/"),
        Domain => (&["{}bio.org", "{}-proteomics.org", "seq.{}.org"], "/protein/"),
        Poison => (&["{}research.org", "{}-institute.org", "{}labs.org"], "/paper/"),
    }
}

impl Site {
    pub fn generate(kind: PageKind, names: &mut NameGen, rng: &mut impl Rng) -> Self {
        let (pats, path) = patterns(kind);
        let (name, _) = names.next(rng);
        let domain = pats[rng.random_range(0..pats.len())].replace("{}", &name.to_lowercase());
        Site { domain, name, path, charset_in_header: rng.random_bool(0.7), server: SERVERS[rng.random_range(0..SERVERS.len())] }
    }

    /// Wraps an article in the site's page chrome.
    pub fn html(&self, title: &str, article: &str, zh: bool, variant: usize) -> String {
        let nav: &[&str] = if zh {
            &["首页", "新闻", "专题", "社区", "关于我们", "联系我们"]
        } else {
            &["Home", "News", "Topics", "Community", "About us", "Contact"]
        };
        let banners_en = [
            "We use cookies to improve your experience. By continuing to browse you agree to our use of cookies.",
            "This site uses cookies for analytics and personalised content. Accept all cookies?",
            "Cookies help us deliver our services. Manage your cookie preferences.",
        ];
        let banners_zh = [
            "本网站使用Cookie来改善您的浏览体验。继续浏览即表示您同意我们使用Cookie。",
            "我们使用Cookie进行统计分析和个性化推荐。是否接受全部Cookie？",
            "Cookie帮助我们提供服务。管理您的Cookie设置。",
        ];
        let banner = if zh { banners_zh[variant % 3] } else { banners_en[variant % 3] };
        let (accept, rights, privacy, terms, subscribe) = if zh {
            ("接受", "版权所有", "隐私政策", "使用条款", "订阅我们的通讯")
        } else {
            ("Accept", "All rights reserved.", "Privacy policy", "Terms of use", "Subscribe to our newsletter")
        };
        let nav_html: String = nav
            .iter()
            .enumerate()
            .map(|(i, n)| format!("<li><a href=\"/{}\">{n}</a></li>", ["", "news", "topics", "community", "about", "contact"][i]))
            .collect();
        format!(
            "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title} - {site}</title>\n\
             <script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments);}}</script>\n\
             <style>body{{font-family:sans-serif}} .nav li{{display:inline}}</style>\n</head>\n<body>\n\
             <div id=\"cookie-banner\" class=\"cookie\">{banner} <button>{accept}</button></div>\n\
             <header><a class=\"logo\" href=\"/\">{site}</a>\n<nav class=\"nav\"><ul>{nav_html}</ul></nav></header>\n\
             <main>\n{article}\n</main>\n\
             <aside class=\"sidebar\"><h3>{subscribe}</h3><form><input type=\"email\"><button>OK</button></form></aside>\n\
             <footer><p>© 2024 {site}. {rights}</p><p><a href=\"/privacy\">{privacy}</a> | <a href=\"/terms\">{terms}</a></p></footer>\n\
             </body>\n</html>\n",
            lang = if zh { "zh" } else { "en" },
            site = self.name,
        )
    }
}
