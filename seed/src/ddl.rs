//! DDL text of the pg_dump output, copied verbatim (structure only, no data) from the
//! reference dumps so that generated files are structurally identical to them.

/// Common `pg_dump` preamble shared by all three dumps.
pub const PREAMBLE: &str = r##"--
-- PostgreSQL database dump
--

-- Dumped from database version 12.2
-- Dumped by pg_dump version 12.3

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

"##;

/// `item` DDL up to and including the `COPY ... FROM stdin;` line.
pub const ITEM_HEAD: &str = r##"--
-- Name: item; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.item (
    id bigint NOT NULL,
    name character varying NOT NULL,
    broadcaster character varying NOT NULL,
    category character varying,
    price integer NOT NULL
);


ALTER TABLE public.item OWNER TO postgres;

--
-- Name: COLUMN item.name; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public.item.name IS '방송상품명';


--
-- Name: COLUMN item.broadcaster; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public.item.broadcaster IS '방송사';


--
-- Name: COLUMN item.category; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public.item.category IS '방송 상품 카테고리';


--
-- Name: COLUMN item.price; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public.item.price IS '상품가격';


--
-- Name: item_id_seq; Type: SEQUENCE; Schema: public; Owner: postgres
--

CREATE SEQUENCE public.item_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


ALTER TABLE public.item_id_seq OWNER TO postgres;

--
-- Name: item_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: postgres
--

ALTER SEQUENCE public.item_id_seq OWNED BY public.item.id;


--
-- Name: item id; Type: DEFAULT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.item ALTER COLUMN id SET DEFAULT nextval('public.item_id_seq'::regclass);


--
-- Data for Name: item; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.item (id, name, broadcaster, category, price) FROM stdin;
"##;

/// Text between the COPY terminator and the `setval` line of `item`.
pub const ITEM_SEQ_HEADER: &str = r##"

--
-- Name: item_id_seq; Type: SEQUENCE SET; Schema: public; Owner: postgres
--

"##;

/// Name of the `item` id sequence as used in `setval`.
pub const ITEM_SEQ: &str = "public.item_id_seq";

/// Text after the `setval` line of `item` (primary key and dump trailer).
pub const ITEM_TAIL: &str = r##"

--
-- Name: item item_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.item
    ADD CONSTRAINT item_pkey PRIMARY KEY (id);


--
-- PostgreSQL database dump complete
--

"##;

/// `user` DDL up to and including the `COPY ... FROM stdin;` line.
pub const USER_HEAD: &str = r##"--
-- Name: user; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public."user" (
    id bigint NOT NULL,
    name character varying NOT NULL,
    access_token character varying NOT NULL
);


ALTER TABLE public."user" OWNER TO postgres;

--
-- Name: COLUMN "user".name; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public."user".name IS '방송상품명';


--
-- Name: COLUMN "user".access_token; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public."user".access_token IS '엑세스 토큰';


--
-- Name: user_id_seq; Type: SEQUENCE; Schema: public; Owner: postgres
--

CREATE SEQUENCE public.user_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


ALTER TABLE public.user_id_seq OWNER TO postgres;

--
-- Name: user_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: postgres
--

ALTER SEQUENCE public.user_id_seq OWNED BY public."user".id;


--
-- Name: user id; Type: DEFAULT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public."user" ALTER COLUMN id SET DEFAULT nextval('public.user_id_seq'::regclass);


--
-- Data for Name: user; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public."user" (id, name, access_token) FROM stdin;
"##;

/// Text between the COPY terminator and the `setval` line of `user`.
pub const USER_SEQ_HEADER: &str = r##"

--
-- Name: user_id_seq; Type: SEQUENCE SET; Schema: public; Owner: postgres
--

"##;

/// Name of the `user` id sequence as used in `setval`.
pub const USER_SEQ: &str = "public.user_id_seq";

/// Text after the `setval` line of `user` (primary key and dump trailer).
pub const USER_TAIL: &str = r##"

--
-- Name: user user_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public."user"
    ADD CONSTRAINT user_pkey PRIMARY KEY (id);


--
-- PostgreSQL database dump complete
--

"##;

/// `alarm` DDL up to and including the `COPY ... FROM stdin;` line.
pub const ALARM_HEAD: &str = r##"--
-- Name: alarm; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.alarm (
    id integer NOT NULL,
    item_id integer,
    user_id integer,
    created timestamp without time zone
);


ALTER TABLE public.alarm OWNER TO postgres;

--
-- Name: COLUMN alarm.item_id; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public.alarm.item_id IS '알람설정한 아이템';


--
-- Name: COLUMN alarm.user_id; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public.alarm.user_id IS '알람설정한 유저';


--
-- Name: alarm_id_seq; Type: SEQUENCE; Schema: public; Owner: postgres
--

CREATE SEQUENCE public.alarm_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


ALTER TABLE public.alarm_id_seq OWNER TO postgres;

--
-- Name: alarm_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: postgres
--

ALTER SEQUENCE public.alarm_id_seq OWNED BY public.alarm.id;


--
-- Name: alarm id; Type: DEFAULT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.alarm ALTER COLUMN id SET DEFAULT nextval('public.alarm_id_seq'::regclass);


--
-- Data for Name: alarm; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.alarm (id, item_id, user_id, created) FROM stdin;
"##;

/// Text between the COPY terminator and the `setval` line of `alarm`.
pub const ALARM_SEQ_HEADER: &str = r##"

--
-- Name: alarm_id_seq; Type: SEQUENCE SET; Schema: public; Owner: postgres
--

"##;

/// Name of the `alarm` id sequence as used in `setval`.
pub const ALARM_SEQ: &str = "public.alarm_id_seq";

/// Text after the `setval` line of `alarm` (primary key and dump trailer).
pub const ALARM_TAIL: &str = r##"

--
-- Name: alarm alarm_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.alarm
    ADD CONSTRAINT alarm_pkey PRIMARY KEY (id);


--
-- PostgreSQL database dump complete
--

"##;
